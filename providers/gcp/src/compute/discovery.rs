//! Node groups declared on instance templates, for users coming from CA on
//! GCE: filled in later in this change.
