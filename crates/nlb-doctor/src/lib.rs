//! The nlb doctor (skeleton; filled in by the doctor work).
