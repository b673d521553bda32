//! Ed25519 keys held on a PKCS#11 token (an HSM, a YubiKey, SoftHSM), named by an RFC 7512
//! URI such as `pkcs11:token=arca;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so`.
//!
//! The private key never leaves the token: arca asks the token to sign (CKM_EDDSA, pure
//! Ed25519) and checks the signature against the public key object before using it, so a
//! token signature verifies with ed25519-dalek exactly as a key file's does. Where the module
//! path and the PIN come from when the URI does not carry them (environment variables, the
//! terminal) is the caller's business: this module takes them as arguments.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use crate::{KeyError, PublicKey, Signer};

/// The scheme of a PKCS#11 URI.
pub const SCHEME: &str = "pkcs11:";

/// Whether `s` names a key on a token (an RFC 7512 URI) rather than a key file.
pub fn is_uri(s: &str) -> bool {
    s.len() >= SCHEME.len() && s[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
}

/// CKA_EC_PARAMS of an Ed25519 key: the DER of OID 1.3.101.112 (RFC 8410), what arca writes.
const ED25519_OID_DER: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// ... or the DER PrintableString "edwards25519", which PKCS#11 3.0 also allows.
const ED25519_NAME_DER: &[u8] = b"\x13\x0cedwards25519";

/// A parsed RFC 7512 PKCS#11 URI: which token, which object, and (in the query) the PIN and
/// the module. Attributes arca does not know are refused, naming them, rather than ignored:
/// an ignored attribute could select another key than the one meant.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token's label.
    pub token: Option<String>,
    /// `manufacturer`: the token's manufacturer id.
    pub manufacturer: Option<String>,
    /// `model`: the token's model.
    pub model: Option<String>,
    /// `serial`: the token's serial number.
    pub serial: Option<String>,
    /// `slot-id`: the slot, as a decimal number.
    pub slot_id: Option<u64>,
    /// `object`: the key objects' label (CKA_LABEL).
    pub object: Option<String>,
    /// `id`: the key objects' CKA_ID, bytes (%-escaped in the URI).
    pub id: Option<Vec<u8>>,
    /// `type`: `private` or `public` (arca uses the pair either way).
    pub object_type: Option<String>,
    /// `pin-value` (query): the user PIN.
    pub pin_value: Option<Zeroizing<String>>,
    /// `pin-source` (query): a file whose first line is the user PIN (`file:` URI or path).
    pub pin_source: Option<PathBuf>,
    /// `module-path` (query): the PKCS#11 module (shared library) to load.
    pub module_path: Option<PathBuf>,
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({self})")
    }
}

/// The URI without its query (so never the PIN): what messages name.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let text = |k: &str, v: &Option<String>, parts: &mut Vec<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={}", escape(v.as_bytes())));
            }
        };
        text("token", &self.token, &mut parts);
        text("manufacturer", &self.manufacturer, &mut parts);
        text("model", &self.model, &mut parts);
        text("serial", &self.serial, &mut parts);
        if let Some(s) = self.slot_id {
            parts.push(format!("slot-id={s}"));
        }
        text("object", &self.object, &mut parts);
        if let Some(id) = &self.id {
            parts.push(format!(
                "id={}",
                id.iter().map(|b| format!("%{b:02x}")).collect::<String>()
            ));
        }
        text("type", &self.object_type, &mut parts);
        write!(f, "{SCHEME}{}", parts.join(";"))
    }
}

/// %-escapes everything but RFC 3986's unreserved characters and a few harmless ones.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Path attributes (RFC 7512 section 2.3) arca does not use; named when refused.
const UNSUPPORTED_PATH: &[&str] = &[
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-description",
    "slot-manufacturer",
];

impl Pkcs11Uri {
    /// Parses `pkcs11:path-attr;path-attr?query-attr&query-attr` (RFC 7512). Values are
    /// %-decoded; each attribute may appear once; unknown attributes are refused by name.
    pub fn parse(uri: &str) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::Pkcs11Uri {
            uri: redact(uri),
            reason,
        };
        if !is_uri(uri) {
            return Err(err("it does not start with pkcs11:".into()));
        }
        let rest = &uri[SCHEME.len()..];
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut out = Pkcs11Uri {
            token: None,
            manufacturer: None,
            model: None,
            serial: None,
            slot_id: None,
            object: None,
            id: None,
            object_type: None,
            pin_value: None,
            pin_source: None,
            module_path: None,
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut unknown = Vec::new();
        let split = |s: &'_ str, sep: char| -> Vec<String> {
            if s.is_empty() {
                Vec::new()
            } else {
                s.split(sep).map(str::to_owned).collect()
            }
        };
        for (attr, in_query) in split(path, ';').into_iter().map(|a| (a, false)).chain(
            split(query.unwrap_or(""), '&')
                .into_iter()
                .map(|a| (a, true)),
        ) {
            let (name, raw) = attr.split_once('=').ok_or_else(|| {
                err(format!(
                    "attribute {attr:?} has no value (expected name=value)"
                ))
            })?;
            if !seen.insert(name.to_owned()) {
                return Err(err(format!("attribute {name:?} is given twice")));
            }
            let bytes =
                Zeroizing::new(percent_decode(raw).map_err(|r| err(format!("{name}: {r}")))?);
            if bytes.is_empty() {
                return Err(err(format!("attribute {name:?} is empty")));
            }
            let text = || {
                std::str::from_utf8(&bytes)
                    .map(str::to_owned)
                    .map_err(|_| err(format!("{name} is not UTF-8")))
            };
            let query_only = matches!(
                name,
                "pin-value" | "pin-source" | "module-path" | "module-name"
            );
            if query_only && !in_query {
                return Err(err(format!(
                    "{name} belongs in the query (after ?), not the path (RFC 7512)"
                )));
            }
            let path_attr = matches!(
                name,
                "token"
                    | "manufacturer"
                    | "model"
                    | "serial"
                    | "slot-id"
                    | "object"
                    | "id"
                    | "type"
            );
            if path_attr && in_query {
                return Err(err(format!(
                    "{name} belongs in the path (before ?), not the query (RFC 7512)"
                )));
            }
            match name {
                "token" => out.token = Some(text()?),
                "manufacturer" => out.manufacturer = Some(text()?),
                "model" => out.model = Some(text()?),
                "serial" => out.serial = Some(text()?),
                "object" => out.object = Some(text()?),
                "id" => out.id = Some(bytes.to_vec()),
                "slot-id" => {
                    out.slot_id = Some(text()?.parse().map_err(|_| {
                        err(format!(
                            "slot-id {:?} is not a decimal number",
                            text().unwrap_or_default()
                        ))
                    })?)
                }
                "type" => {
                    let t = text()?;
                    if t != "private" && t != "public" {
                        return Err(err(format!(
                            "type={t}: arca uses key pairs (type=private or type=public)"
                        )));
                    }
                    out.object_type = Some(t);
                }
                "pin-value" => out.pin_value = Some(Zeroizing::new(text()?)),
                "pin-source" => {
                    let t = text()?;
                    let path = t
                        .strip_prefix("file://")
                        .or_else(|| t.strip_prefix("file:"));
                    out.pin_source = Some(PathBuf::from(path.unwrap_or(&t)));
                }
                "module-path" => out.module_path = Some(PathBuf::from(text()?)),
                other => unknown.push(other.to_owned()),
            }
        }
        if !unknown.is_empty() {
            let kind = if unknown
                .iter()
                .all(|u| UNSUPPORTED_PATH.contains(&u.as_str()) || u == "module-name")
            {
                "unsupported"
            } else {
                "unknown"
            };
            return Err(err(format!(
                "{kind} attribute(s) {} (arca takes token, manufacturer, model, serial, slot-id, \
                 object, id, type; and in the query pin-value, pin-source, module-path)",
                unknown.join(", ")
            )));
        }
        if out.pin_value.is_some() && out.pin_source.is_some() {
            return Err(err("give pin-value or pin-source, not both".into()));
        }
        Ok(out)
    }

    /// Refuses a URI that names no key object (no `object` and no `id`).
    fn require_object(&self) -> Result<(), KeyError> {
        if self.object.is_none() && self.id.is_none() {
            return Err(KeyError::Pkcs11Uri {
                uri: self.to_string(),
                reason: "it names no key: give object=LABEL or id=%xx...".into(),
            });
        }
        Ok(())
    }

    /// How messages name the token: its label, else the URI.
    pub fn token_name(&self) -> String {
        match &self.token {
            Some(t) => t.clone(),
            None => self.to_string(),
        }
    }

    /// The object attributes that select the key (label, id).
    fn object_template(&self) -> Vec<Attribute> {
        let mut t = Vec::new();
        if let Some(l) = &self.object {
            t.push(Attribute::Label(l.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }
}

/// `uri` with its query cut off (the query may hold the PIN) and any `pin-value` in the path
/// masked, for error messages.
fn redact(uri: &str) -> String {
    let (path, query) = match uri.split_once('?') {
        Some((p, _)) => (p, "?..."),
        None => (uri, ""),
    };
    let path: Vec<&str> = path
        .split(';')
        .map(|a| {
            if a.starts_with("pin-value=") {
                "pin-value=..."
            } else {
                a
            }
        })
        .collect();
    format!("{}{query}", path.join(";"))
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape at {:?}", &s[i..s.len().min(i + 3)]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// PKCS#11 modules loaded and initialised in this process, by path. C_Initialize may run once
/// per module and process, and every key on the module shares the context.
fn module(path: &Path) -> Result<Pkcs11, KeyError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut loaded = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = loaded.get(path) {
        return Ok(ctx.clone());
    }
    let fail = |reason: String| KeyError::Pkcs11 {
        key: format!("module {}", path.display()),
        reason,
    };
    let ctx = Pkcs11::new(path).map_err(|e| fail(format!("cannot load it: {e}")))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(format!("C_Initialize failed: {}", rv(&e)))),
    }
    loaded.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A PKCS#11 error, briefly: the return value's name and the function (cryptoki's own
/// descriptions run to several sentences).
fn rv(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{rv:?} from {f:?}"),
        other => other.to_string(),
    }
}

/// The one slot whose token the URI names.
fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, KeyError> {
    let fail = |reason: String| KeyError::Pkcs11 {
        key: uri.to_string(),
        reason,
    };
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| fail(format!("listing slots: {}", rv(&e))))?;
    let mut matching = Vec::new();
    let mut labels = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| fail(format!("reading token of slot {}: {}", slot.id(), rv(&e))))?;
        let label = info.label().trim_end().to_owned();
        labels.push(format!("{label:?} (slot-id={})", slot.id()));
        let ok =
            |want: &Option<String>, have: &str| want.as_ref().is_none_or(|w| w == have.trim_end());
        if ok(&uri.token, &label)
            && ok(&uri.manufacturer, info.manufacturer_id())
            && ok(&uri.model, info.model())
            && ok(&uri.serial, info.serial_number())
            && uri.slot_id.is_none_or(|s| s == slot.id())
        {
            matching.push(slot);
        }
    }
    match matching.len() {
        1 => Ok(matching[0]),
        0 => Err(fail(format!(
            "no such token (tokens present: {})",
            if labels.is_empty() {
                "none".to_owned()
            } else {
                labels.join(", ")
            }
        ))),
        n => Err(fail(format!(
            "{n} tokens match: add slot-id= or serial= (tokens present: {})",
            labels.join(", ")
        ))),
    }
}

/// Logs the session in as the user. A refused PIN is [`KeyError::PinIncorrect`].
fn login(session: &Session, uri: &Pkcs11Uri, pin: &str) -> Result<(), KeyError> {
    let pin = AuthPin::new(pin.to_owned().into());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(KeyError::PinIncorrect {
            token: uri.token_name(),
        }),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(KeyError::Pkcs11 {
            key: uri.to_string(),
            reason: "the token's user PIN is locked (CKR_PIN_LOCKED): too many wrong PINs".into(),
        }),
        Err(e) => Err(KeyError::Pkcs11 {
            key: uri.to_string(),
            reason: format!("login failed: {}", rv(&e)),
        }),
    }
}

/// The one object of `class` the URI names (by label and/or id).
fn find_one(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
    what: &str,
) -> Result<Option<ObjectHandle>, KeyError> {
    let mut template = vec![Attribute::Class(class)];
    template.extend(uri.object_template());
    let found = session
        .find_objects(&template)
        .map_err(|e| KeyError::Pkcs11 {
            key: uri.to_string(),
            reason: format!("searching for the {what}: {}", rv(&e)),
        })?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(KeyError::Pkcs11 {
            key: uri.to_string(),
            reason: format!("{n} {what} objects match: give an id= that names one"),
        }),
    }
}

/// The Ed25519 public key of the public key object the URI names.
fn read_public(session: &Session, uri: &Pkcs11Uri) -> Result<PublicKey, KeyError> {
    let fail = |reason: String| KeyError::Pkcs11 {
        key: uri.to_string(),
        reason,
    };
    let handle =
        find_one(session, uri, ObjectClass::PUBLIC_KEY, "public key")?.ok_or_else(|| {
            fail(
                "no public key object on the token (arca reads the key pair's public half from it)"
                    .into(),
            )
        })?;
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(|e| fail(format!("reading the public key: {}", rv(&e))))?;
    let mut point = None;
    for a in attrs {
        match a {
            Attribute::KeyType(t) if t != KeyType::EC_EDWARDS => {
                return Err(fail(format!(
                    "the key is {t}, not Ed25519 (CKK_EC_EDWARDS)"
                )));
            }
            Attribute::EcParams(p) if p != ED25519_OID_DER && p != ED25519_NAME_DER => {
                return Err(fail(format!(
                    "the key's curve (CKA_EC_PARAMS {}) is not Ed25519",
                    hex::encode(&p)
                )));
            }
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let point = point.ok_or_else(|| fail("the public key has no CKA_EC_POINT".into()))?;
    PublicKey::from_bytes(ec_point(&point)).map_err(|e| fail(e.to_string()))
}

/// The 32-byte point inside CKA_EC_POINT: a DER OCTET STRING around it, as PKCS#11 says, or
/// the raw bytes, as some modules write it.
pub fn ec_point(raw: &[u8]) -> &[u8] {
    match raw {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        _ => raw,
    }
}

/// An Ed25519 private key on a token, its session logged in. Opening checks the PIN and finds
/// both halves, so a command opens every key before it signs anything.
pub struct Pkcs11Key {
    session: Session,
    private: ObjectHandle,
    public: PublicKey,
    uri: Pkcs11Uri,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Key({}, {})", self.uri, self.public.key_id())
    }
}

/// A read-only session on the one token the URI selects, through `module_path`.
fn read_only_session(uri: &Pkcs11Uri, module_path: &Path) -> Result<Session, KeyError> {
    let ctx = module(module_path)?;
    let slot = find_slot(&ctx, uri)?;
    ctx.open_ro_session(slot).map_err(|e| KeyError::Pkcs11 {
        key: uri.to_string(),
        reason: format!("opening a session: {}", rv(&e)),
    })
}

impl Pkcs11Key {
    /// Opens the key the URI names with `module` (a PKCS#11 shared library) and logs in with
    /// `pin`.
    pub fn open(uri: &Pkcs11Uri, module_path: &Path, pin: &str) -> Result<Self, KeyError> {
        uri.require_object()?;
        let session = read_only_session(uri, module_path)?;
        login(&session, uri, pin)?;
        let private = find_one(&session, uri, ObjectClass::PRIVATE_KEY, "private key")?
            .ok_or_else(|| KeyError::Pkcs11 {
                key: uri.to_string(),
                reason: "no such private key on the token".into(),
            })?;
        let public = read_public(&session, uri)?;
        Ok(Pkcs11Key {
            session,
            private,
            public,
            uri: uri.clone(),
        })
    }

    /// The URI it was opened with (without the query).
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    /// The public key of the key pair the URI names, read without logging in (public key
    /// objects are public): for `arca key pub` and `arca key id`.
    pub fn read_public(uri: &Pkcs11Uri, module_path: &Path) -> Result<PublicKey, KeyError> {
        uri.require_object()?;
        let session = read_only_session(uri, module_path)?;
        read_public(&session, uri)
    }

    /// Generates an Ed25519 key pair on the token: the private key sensitive and never
    /// extractable (it cannot leave the token), labelled with the URI's `object` and given its
    /// `id` (or 16 random bytes). Refuses when an object with that label or id exists: a key
    /// is never replaced. Returns the public key.
    pub fn generate(uri: &Pkcs11Uri, module_path: &Path, pin: &str) -> Result<PublicKey, KeyError> {
        let fail = |reason: String| KeyError::Pkcs11 {
            key: uri.to_string(),
            reason,
        };
        let label = uri
            .object
            .clone()
            .ok_or_else(|| fail("a new key needs a label: give object=LABEL".into()))?;
        let ctx = module(module_path)?;
        let slot = find_slot(&ctx, uri)?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| fail(format!("opening a read-write session: {}", rv(&e))))?;
        login(&session, uri, pin)?;
        let mut existing = session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| fail(format!("searching the token: {}", rv(&e))))?;
        if let Some(id) = &uri.id {
            existing.extend(
                session
                    .find_objects(&[Attribute::Id(id.clone())])
                    .map_err(|e| fail(format!("searching the token: {}", rv(&e))))?,
            );
        }
        if !existing.is_empty() {
            return Err(fail(
                "an object with this label or id exists on the token: a key is never replaced"
                    .into(),
            ));
        }
        let id = match &uri.id {
            Some(id) => id.clone(),
            None => {
                let mut id = vec![0u8; 16];
                ring::rand::SystemRandom::new()
                    .fill(&mut id)
                    .map_err(|_| KeyError::Random)?;
                id
            }
        };
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_OID_DER.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        session
            .generate_key_pair(
                &Mechanism::EccEdwardsKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(|e| fail(format!("generating an Ed25519 key pair: {}", rv(&e))))?;
        let made = Pkcs11Uri {
            object: Some(label),
            id: Some(id),
            ..uri.clone()
        };
        read_public(&session, &made)
    }
}

impl Signer for Pkcs11Key {
    fn public(&self) -> PublicKey {
        self.public
    }

    /// Asks the token to sign (CKM_EDDSA, pure Ed25519) and checks the signature against the
    /// public key: a private object that is not the public one's pair signs nothing.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let fail = |reason: String| KeyError::SignFailed {
            key: format!("{} ({})", self.uri, self.public.key_id()),
            reason,
        };
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let sig = self
            .session
            .sign(&mechanism, self.private, msg)
            .map_err(|e| fail(format!("the token refused: {}", rv(&e))))?;
        if !self.public.verify(msg, &sig) {
            return Err(fail(
                "the token's signature does not verify with the public key object (the private \
                 and public objects are not one pair?)"
                    .into(),
            ));
        }
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(uri: &str) -> String {
        match Pkcs11Uri::parse(uri) {
            Ok(u) => panic!("{uri} parsed as {u:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_path_and_query_attributes() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=arca%20root;object=root-1;id=%01%02%ff;slot-id=7;type=private\
             ?pin-value=1234&module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("arca root"));
        assert_eq!(u.object.as_deref(), Some("root-1"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 2, 0xff][..]));
        assert_eq!(u.slot_id, Some(7));
        assert_eq!(u.object_type.as_deref(), Some("private"));
        assert_eq!(u.pin_value.as_deref().map(String::as_str), Some("1234"));
        assert_eq!(
            u.module_path.as_deref(),
            Some(Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        // Messages never carry the query (the PIN).
        let shown = u.to_string();
        assert!(!shown.contains("1234") && !shown.contains('?'), "{shown}");
        assert_eq!(Pkcs11Uri::parse(&shown).unwrap().id, u.id);
    }

    #[test]
    fn scheme_is_case_insensitive_and_pin_source_takes_file_uris() {
        let u = Pkcs11Uri::parse("PKCS11:token=t;object=o?pin-source=file:/run/pin").unwrap();
        assert_eq!(u.pin_source.as_deref(), Some(Path::new("/run/pin")));
        let u = Pkcs11Uri::parse("pkcs11:object=o?pin-source=/run/pin%20file").unwrap();
        assert_eq!(u.pin_source.as_deref(), Some(Path::new("/run/pin file")));
        assert!(is_uri("pkcs11:"));
        assert!(!is_uri("keys/root.key"));
        assert!(!is_uri("./pkcs11:object=o"));
    }

    #[test]
    fn unknown_attributes_are_refused_by_name() {
        let e = bad("pkcs11:token=t;object=o;colour=blue");
        assert!(e.contains("colour"), "{e}");
        let e = bad("pkcs11:token=t;object=o?pin-value=1&x-vendor=1");
        assert!(e.contains("unknown attribute(s) x-vendor"), "{e}");
        let e = bad("pkcs11:token=t;object=o?module-name=softhsm2");
        assert!(e.contains("unsupported attribute(s) module-name"), "{e}");
        let e = bad("pkcs11:token=t;slot-description=s");
        assert!(e.contains("slot-description"), "{e}");
    }

    #[test]
    fn malformed_uris_are_refused_with_the_reason() {
        assert!(bad("token=t;object=o").contains("pkcs11:"));
        assert!(bad("pkcs11:token=t;token=u").contains("twice"));
        assert!(bad("pkcs11:token").contains("no value"));
        assert!(bad("pkcs11:token=").contains("empty"));
        assert!(bad("pkcs11:id=%zz").contains("%-escape"));
        assert!(bad("pkcs11:id=%0").contains("%-escape"));
        assert!(bad("pkcs11:slot-id=one").contains("decimal"));
        assert!(bad("pkcs11:object=o;type=cert").contains("type=cert"));
        assert!(bad("pkcs11:token=%ff").contains("UTF-8"));
        let e = bad("pkcs11:token=t;pin-value=1234");
        assert!(e.contains("query") && !e.contains("1234"), "{e}");
        assert!(bad("pkcs11:token=t?object=o").contains("path"));
        assert!(bad("pkcs11:object=o?pin-value=1&pin-source=/p").contains("not both"));
        // A refused URI's query (which may hold the PIN) is not repeated.
        let e = bad("pkcs11:object=o;bogus=1?pin-value=secret");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn a_key_needs_an_object_or_an_id() {
        let u = Pkcs11Uri::parse("pkcs11:token=t").unwrap();
        assert!(
            u.require_object()
                .unwrap_err()
                .to_string()
                .contains("object=")
        );
        assert!(
            Pkcs11Uri::parse("pkcs11:id=%01")
                .unwrap()
                .require_object()
                .is_ok()
        );
    }

    #[test]
    fn ec_point_unwraps_a_der_octet_string_or_takes_raw_bytes() {
        let raw = [7u8; 32];
        let mut wrapped = vec![0x04, 0x20];
        wrapped.extend_from_slice(&raw);
        assert_eq!(ec_point(&wrapped), &raw);
        assert_eq!(ec_point(&raw), &raw);
    }

    #[test]
    fn a_missing_module_is_an_error_naming_it() {
        let u = Pkcs11Uri::parse("pkcs11:token=t;object=o").unwrap();
        let e = Pkcs11Key::open(&u, Path::new("/nonexistent/libnone.so"), "1234").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/libnone.so"), "{e}");
    }
}
