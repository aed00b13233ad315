//! Holds the workspace examples and end-to-end tests; it has no library code of its own.
