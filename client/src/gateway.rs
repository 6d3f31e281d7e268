//! gateway placeholder
