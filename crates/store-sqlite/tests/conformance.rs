//! The datastore conformance suite against a fresh database file per case.

store::conformance_tests!(async {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = store_sqlite::SqliteStore::open(&dir.path().join("state.db")).expect("open store");
    store::testsuite::WithGuard::new(store, dir)
});
