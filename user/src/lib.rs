//! Shared code of `pfdemo` and the in-VM end-to-end tests: parsers for what the module and
//! the kernel print, and thin wrappers around the system calls the tools make.

pub mod parse;
pub mod sys;
