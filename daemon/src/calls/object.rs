//! Objects: creation, attributes, search and key generation, with handles translated per
//! client and private objects kept from clients that are not logged in.

use std::sync::atomic::Ordering;

use cryptoki_sys as ck;
use kyso_proto::mechanism::Mechanism;
use kyso_proto::{Attribute, AttributeQuery, Reply, Ulong};

use crate::client::{Client, Session};
use crate::error::Rv;

/// Most handles one `C_FindObjects` returns, whatever the application asks for.
const MAX_FIND: usize = 4096;

fn bool_attr(template: &[Attribute], kind: Ulong) -> Option<bool> {
    template
        .iter()
        .rev()
        .find(|a| a.kind == kind)
        .and_then(|a| a.value.as_ref())
        .map(|v| v.iter().any(|b| *b != 0))
}

/// Whether the client is logged in as the normal user (the only one who sees private objects).
fn is_user(c: &Client, s: &Session) -> bool {
    c.login_of(&s.token) == Some(ck::CKU_USER)
}

/// The template of an object a client makes (create, copy, generate). Logged in as the user
/// it may make anything; otherwise only public objects, and token objects only while logged in
/// through kysod at all (as the SO). The module may be logged in for someone else, so a
/// template that does not say whether the object is private says so: it is not.
fn admissible_template(
    c: &Client,
    s: &Session,
    mut template: Vec<Attribute>,
) -> Result<Vec<Attribute>, Rv> {
    let login = c.login_of(&s.token);
    if login == Some(ck::CKU_USER) {
        return Ok(template);
    }
    if login.is_none() && bool_attr(&template, ck::CKA_TOKEN) == Some(true) {
        return Err(Rv(ck::CKR_USER_NOT_LOGGED_IN));
    }
    match bool_attr(&template, ck::CKA_PRIVATE) {
        Some(true) => Err(Rv(ck::CKR_USER_NOT_LOGGED_IN)),
        Some(false) => Ok(template),
        None => {
            template.push(Attribute {
                kind: ck::CKA_PRIVATE,
                value: Some(vec![ck::CK_FALSE]),
            });
            Ok(template)
        }
    }
}

/// The token's objects changed: the signing policy reads its certificates again.
fn objects_changed(s: &Session) {
    s.token.objects_changed();
}

pub fn create(c: &Client, handle: Ulong, template: Vec<Attribute>) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let template = admissible_template(c, &s, template)?;
    let object = s.token.module.create_object(s.module_session, &template)?;
    objects_changed(&s);
    Ok(Reply::Handle(c.export_made(&s, object, is_user(c, &s))))
}

pub fn copy(
    c: &Client,
    handle: Ulong,
    object: Ulong,
    template: Vec<Attribute>,
) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let source = c.object(s.token.slot, object)?;
    // A copy is a token object when its source is and the template does not say otherwise.
    if c.login_of(&s.token).is_none()
        && bool_attr(&template, ck::CKA_TOKEN).is_none()
        && !is_session_object(&s, source)
    {
        return Err(Rv(ck::CKR_USER_NOT_LOGGED_IN));
    }
    let template = admissible_template(c, &s, template)?;
    let copy = s
        .token
        .module
        .copy_object(s.module_session, source, &template)?;
    objects_changed(&s);
    Ok(Reply::Handle(c.export_made(&s, copy, is_user(c, &s))))
}

/// Token objects (`CKA_TOKEN` true) change only under the client's own login through kysod:
/// the module may be logged in for another application, and a token object outlives them all.
fn may_change(c: &Client, s: &Session, object: Ulong) -> Result<(), Rv> {
    if c.login_of(&s.token).is_some() || is_session_object(s, object) {
        Ok(())
    } else {
        Err(Rv(ck::CKR_USER_NOT_LOGGED_IN))
    }
}

pub fn destroy(c: &Client, handle: Ulong, object: Ulong) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let target = c.object(s.token.slot, object)?;
    may_change(c, &s, target)?;
    s.token.module.destroy_object(s.module_session, target)?;
    objects_changed(&s);
    c.forget_object(object);
    Ok(Reply::None)
}

pub fn size(c: &Client, handle: Ulong, object: Ulong) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let target = c.object(s.token.slot, object)?;
    Ok(Reply::Size(
        s.token.module.object_size(s.module_session, target)?,
    ))
}

pub fn get_attributes(
    c: &Client,
    handle: Ulong,
    object: Ulong,
    queries: &[AttributeQuery],
) -> (Rv, Reply) {
    let target = c
        .session(handle)
        .and_then(|s| Ok((c.object(s.token.slot, object)?, s)));
    match target {
        Ok((target, s)) => {
            let (rv, values) = s
                .token
                .module
                .get_attributes(s.module_session, target, queries);
            (rv, Reply::Attributes(values))
        }
        Err(rv) => (rv, Reply::None),
    }
}

pub fn set_attributes(
    c: &Client,
    handle: Ulong,
    object: Ulong,
    template: &[Attribute],
) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let target = c.object(s.token.slot, object)?;
    may_change(c, &s, target)?;
    if !is_user(c, &s) && bool_attr(template, ck::CKA_PRIVATE) == Some(true) {
        return Err(Rv(ck::CKR_USER_NOT_LOGGED_IN));
    }
    s.token
        .module
        .set_attributes(s.module_session, target, template)?;
    objects_changed(&s);
    Ok(Reply::None)
}

pub fn find_init(c: &Client, handle: Ulong, mut template: Vec<Attribute>) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let mut nothing = false;
    if !is_user(c, &s) {
        // The module may be logged in for another client: restrict the search to public
        // objects, and a search for private ones finds nothing.
        match bool_attr(&template, ck::CKA_PRIVATE) {
            Some(true) => nothing = true,
            Some(false) => {}
            None => template.push(Attribute {
                kind: ck::CKA_PRIVATE,
                value: Some(vec![ck::CK_FALSE]),
            }),
        }
    }
    s.token.module.find_init(s.module_session, &template)?;
    s.find_nothing.store(nothing, Ordering::Relaxed);
    Ok(Reply::None)
}

/// Finds up to `max` objects for the client. Session objects are the application's own in
/// PKCS#11, and at the module every session object kysod's clients make is kysod's: one the
/// client did not make itself (another client's) is left out, and the search goes on so that a full answer still
/// means there may be more. (A client's private session objects end with its logout when the
/// module logs out; while another client keeps the module logged in they live on, and the
/// client finds them again once it logs in again.)
pub fn find(c: &Client, handle: Ulong, max: Ulong) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let max = (max as usize).min(MAX_FIND);
    let user = is_user(c, &s);
    let mut handles = Vec::new();
    loop {
        let want = max - handles.len();
        let found = s.token.module.find(s.module_session, want)?;
        if s.find_nothing.load(Ordering::Relaxed) {
            return Ok(Reply::Handles(Vec::new()));
        }
        let last = found.len() < want;
        for h in found {
            match c.exported(s.token.slot, h) {
                Some(handle) => handles.push(handle),
                None if !c.made(s.token.slot, h) && is_session_object(&s, h) => {}
                None => handles.push(c.export_object(s.token.slot, h, user)),
            }
        }
        if last || handles.len() >= max {
            break;
        }
    }
    Ok(Reply::Handles(handles))
}

/// Whether a module object is a session object (`CKA_TOKEN` false). An object whose
/// `CKA_TOKEN` cannot be read counts as a token object.
fn is_session_object(s: &Session, object: Ulong) -> bool {
    let query = AttributeQuery {
        kind: ck::CKA_TOKEN,
        len: Some(std::mem::size_of::<ck::CK_BBOOL>() as Ulong),
    };
    let (_, values) = s
        .token
        .module
        .get_attributes(s.module_session, object, &[query]);
    values
        .first()
        .and_then(|v| v.value.as_deref())
        .is_some_and(|v| v == [ck::CK_FALSE])
}

pub fn find_final(c: &Client, handle: Ulong) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    s.token.module.find_final(s.module_session)?;
    s.find_nothing.store(false, Ordering::Relaxed);
    Ok(Reply::None)
}

pub fn generate_key(
    c: &Client,
    handle: Ulong,
    mechanism: &Mechanism,
    template: &[Attribute],
) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let template = admissible_template(c, &s, template.to_vec())?;
    let key = s
        .token
        .module
        .generate_key(s.module_session, mechanism, &template)?;
    objects_changed(&s);
    Ok(Reply::Handle(c.export_made(&s, key, is_user(c, &s))))
}

pub fn generate_key_pair(
    c: &Client,
    handle: Ulong,
    mechanism: &Mechanism,
    public: &[Attribute],
    private: &[Attribute],
) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let public = admissible_template(c, &s, public.to_vec())?;
    let private = admissible_template(c, &s, private.to_vec())?;
    let (pub_key, priv_key) =
        s.token
            .module
            .generate_key_pair(s.module_session, mechanism, &public, &private)?;
    objects_changed(&s);
    let user = is_user(c, &s);
    Ok(Reply::KeyPair {
        public: c.export_made(&s, pub_key, user),
        private: c.export_made(&s, priv_key, user),
    })
}
