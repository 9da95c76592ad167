//! Under construction: nothing here yet.
