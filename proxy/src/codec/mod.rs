//! HTTP/1.1 syntax, shared by the client side ([`crate::h1`]) and the upstream client
//! ([`crate::upstream::client`]): heads parsed with httparse into byte ranges of the read
//! buffer ([`head`]), and the chunked coding ([`chunked`]).

pub(crate) mod chunked;
pub(crate) mod head;
