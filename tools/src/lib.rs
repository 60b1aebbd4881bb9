//! What the `kyso` and `kyso-helpdesk` commands share: the connection to kysod.

#![forbid(unsafe_code)]

pub mod kysod;
pub mod helpdesk {
    //! The helpdesk's side of token recovery (`kyso-helpdesk`).
    pub mod passphrase;
    pub mod store;
}
