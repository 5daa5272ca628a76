//! PDND protocol code, free of actix, HTTP clients, the clock and config reads.
