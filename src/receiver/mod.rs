//! The external-process side: find the callback URI, get a token, call back.
