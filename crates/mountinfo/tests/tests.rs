//! Integration tests of crcli-mountinfo: the parser on hand-written lines, the model, and
//! tables built from the real kernel of this machine (in private mount namespaces).

#[path = "it/ns.rs"]
mod ns;

#[path = "it/parse.rs"]
mod parse;

#[path = "it/roundtrip.rs"]
mod roundtrip;

#[path = "it/table.rs"]
mod table;

#[path = "it/kernel.rs"]
mod kernel;

#[path = "it/resolve.rs"]
mod resolve;
