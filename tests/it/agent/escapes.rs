//! Section 6: Archives that try to write outside the release

use super::*;

#[test]
fn signed_archives_that_escape_the_release_are_refused() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    let outside = r.s.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let abs = format!("{}/abs-escape", outside.display());
    let abs_dir = outside.display().to_string();
    let attacks: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "2.0.0",
            vec![Entry::File("../escape", b"pwned".to_vec(), 0o755)],
            "path contains `..`",
        ),
        (
            "3.0.0",
            vec![Entry::File("bin/../../../escape", b"pwned".to_vec(), 0o755)],
            "path contains `..`",
        ),
        (
            "4.0.0",
            vec![Entry::File(&abs, b"pwned".to_vec(), 0o644)],
            "absolute path",
        ),
        (
            "5.0.0",
            vec![
                Entry::Symlink("link", &abs_dir),
                Entry::File("link/pwned", b"pwned".to_vec(), 0o644),
            ],
            "symlink to the absolute path",
        ),
        (
            "6.0.0",
            vec![
                Entry::Symlink("up", ".."),
                Entry::File("up/pwned", b"pwned".to_vec(), 0o644),
            ],
            "leaves the release",
        ),
    ];
    let pax_record = |key: &str, value: &str| {
        // "LEN key=value\n", where LEN counts its own digits too.
        let rest = format!(" {key}={value}\n");
        let mut len = rest.len() + 1;
        while (rest.len() + len.to_string().len()) != len {
            len = rest.len() + len.to_string().len();
        }
        format!("{len}{rest}").into_bytes()
    };
    let long = format!("{}../../gnu-escape", "deep/".repeat(30));
    let attacks: Vec<(&str, Vec<Entry>, &str)> = attacks
        .into_iter()
        .chain([
            (
                // A pax header renames the next, harmless-looking entry.
                "7.0.0",
                vec![
                    Entry::Raw(
                        tar::EntryType::XHeader,
                        "PaxHeaders/harmless",
                        pax_record("path", "../pax-escape"),
                    ),
                    Entry::File("harmless", b"pwned".to_vec(), 0o644),
                ],
                "entry `../pax-escape` refused: path contains `..`",
            ),
            (
                // So does a GNU long-name header, with the `..` past the 100-byte field.
                "8.0.0",
                vec![
                    Entry::Raw(tar::EntryType::GNULongName, "././@LongLink", {
                        let mut b = long.clone().into_bytes();
                        b.push(0);
                        b
                    }),
                    Entry::File("harmless", b"pwned".to_vec(), 0o644),
                ],
                "gnu-escape` refused: path contains `..`",
            ),
        ])
        .collect();
    for (version, extra, why) in attacks {
        r.push(version, extra);
        let out = r.once(&[], 6);
        assert!(out.contains("refused"), "{version}: {out}");
        assert!(out.contains(why), "{version}: {out}");
        r.assert_running("1.0.0", &["1.0.0"]);
        // A bad archive is the release's fault: reported as failed, and not fetched again.
        assert_row(&r.s, AGENT, "failed", Some("1.0.0"), Some(version), why);
        let out = r.once(&[], 6);
        assert!(
            out.contains(&format!(
                "{version} failed here before; still running 1.0.0"
            )),
            "{version} retried: {out}"
        );
        let everything = common::list_files(r.s.dir.path());
        let escaped: Vec<_> = everything
            .iter()
            .filter(|f| f.contains("escape") || f.contains("pwned"))
            .collect();
        assert!(escaped.is_empty(), "{version} wrote {escaped:?}");
        assert_eq!(common::list_files(&outside), Vec::<String>::new());
    }

    // A zip whose entry climbs out.
    let zip_path = r.s.path("web-9.0.0.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("VERSION", opts).unwrap();
    zip.write_all(b"9.0.0").unwrap();
    zip.start_file("../zip-escape", opts).unwrap();
    zip.write_all(b"pwned").unwrap();
    zip.finish().unwrap();
    r.s.push(&zip_path, NAME, "9.0.0", &r.key);
    let out = r.once(&[], 6);
    assert!(
        out.contains("archive entry `../zip-escape` refused"),
        "{out}"
    );
    r.assert_running("1.0.0", &["1.0.0"]);
    assert_row(
        &r.s,
        AGENT,
        "failed",
        Some("1.0.0"),
        Some("9.0.0"),
        "zip-escape",
    );
    let escaped: Vec<_> = common::list_files(r.s.dir.path())
        .into_iter()
        .filter(|f| f.contains("escape") || f.contains("pwned"))
        .collect();
    assert!(escaped.is_empty(), "wrote {escaped:?}");
}
