//! Start: the stored catalog is re-created one definition at a time, and each source's
//! pipeline is started on its own. A definition that no longer holds — a source whose path was
//! deleted or whose Kafka configuration is refused, a view whose plan no longer builds, state
//! that does not load — is `failed` with the reason in `weir_catalog`, and everything else
//! runs. Failures are shown on the status board only (nothing is stored), so the next start
//! tries again; a failed definition can be inspected and dropped.

use super::{Catalog, Engine, EngineError};
use crate::catalog::{CatalogEntry, EntryKind};
use crate::plan::{PlanError, WeirStatement};
use crate::source::check_source;
use crate::state::{StateError, Table};

/// A stored definition that could not be re-created at start. It stays stored (so a start
/// that can re-create it does) and is shown `failed`; DROP deletes it.
#[derive(Debug, Clone)]
pub(super) struct Broken {
    pub kind: EntryKind,
    pub sql: String,
}

/// The kind and name a catalog key names (`source/<name>`, `view/<name>`).
fn parse_key(key: &[u8]) -> Option<(EntryKind, String)> {
    let key = std::str::from_utf8(key).ok()?;
    if let Some(name) = key.strip_prefix("source/") {
        return Some((EntryKind::Source, name.to_string()));
    }
    key.strip_prefix("view/")
        .map(|name| (EntryKind::View, name.to_string()))
}

impl Engine {
    /// Re-creates the catalog from the store, in creation order, then starts the pipelines.
    /// Fails only when the store itself cannot be read.
    pub(super) async fn restore(&self) -> Result<(), EngineError> {
        let mut entries = Vec::new();
        let mut unreadable = Vec::new();
        for (key, value) in self.store.scan_prefix(Table::Catalog, b"")? {
            match serde_json::from_slice::<CatalogEntry>(&value) {
                Ok(entry) => entries.push(entry),
                Err(e) => match parse_key(&key) {
                    Some((kind, name)) => unreadable.push((kind, name, e.to_string())),
                    None => {
                        return Err(StateError::Corrupt {
                            table: "catalog",
                            reason: format!("key {}: {e}", String::from_utf8_lossy(&key)),
                        }
                        .into())
                    }
                },
            }
        }
        entries.sort_by_key(|e| e.seq);
        let mut catalog = self.catalog.lock().await;
        for (kind, name, error) in unreadable {
            let error = format!("its stored definition does not parse: {error}");
            self.mark_broken(&mut catalog, kind, &name, String::new(), error, None);
        }
        for entry in entries {
            catalog.next_seq = catalog.next_seq.max(entry.seq + 1);
            if let Err(e) = self.restore_entry(&mut catalog, &entry).await {
                let source = match &e {
                    EngineError::Plan(PlanError::UnknownRelation { name, .. }) => {
                        Some(name.clone())
                    }
                    _ => None,
                };
                let error = format!("cannot be re-created at start: {e}");
                self.mark_broken(
                    &mut catalog,
                    entry.kind,
                    &entry.name,
                    entry.sql.clone(),
                    error,
                    source,
                );
            }
        }
        let sources: Vec<String> = catalog.sources.keys().cloned().collect();
        for source in sources {
            self.restart_pipeline(&mut catalog, &source).await?;
        }
        Ok(())
    }

    /// Re-creates one stored definition. A source whose input cannot be opened now is
    /// re-created anyway and remembered as unopened: its views and their stored rows stay
    /// visible, and no pipeline runs for it until it opens.
    async fn restore_entry(
        &self,
        catalog: &mut Catalog,
        entry: &CatalogEntry,
    ) -> Result<(), EngineError> {
        match crate::plan::parse_statement(&entry.sql)? {
            Some(WeirStatement::CreateSource(decl)) if entry.kind == EntryKind::Source => {
                let name = decl.name.clone();
                self.define_source(catalog, decl, entry.sql.clone())?;
                let def = catalog.sources[&name].clone();
                if let Err(e) = check_source(&def.spec, def.schema.clone()) {
                    catalog.unopened.insert(name, e.to_string());
                }
                Ok(())
            }
            Some(WeirStatement::CreateView(decl)) if entry.kind == EntryKind::View => {
                self.add_view(catalog, decl, entry.sql.clone()).await?;
                Ok(())
            }
            _ => Err(StateError::Corrupt {
                table: "catalog",
                reason: format!("not a definition of a {:?}: {}", entry.kind, entry.sql),
            }
            .into()),
        }
    }

    /// Shows a definition that could not be re-created as failed, and keeps it for DROP.
    fn mark_broken(
        &self,
        catalog: &mut Catalog,
        kind: EntryKind,
        name: &str,
        sql: String,
        error: String,
        source: Option<String>,
    ) {
        tracing::error!(name, %error, "stored definition failed at start");
        match kind {
            EntryKind::Source => self.board.update_source(name, |s| {
                s.connector = "unknown".into();
                s.status = "failed".into();
                s.error = Some(error);
            }),
            EntryKind::View => self.board.update_view(name, |v| {
                v.source = source.unwrap_or_default();
                v.status = "failed".into();
                v.error = Some(error);
            }),
        }
        catalog
            .broken
            .insert(name.to_string(), Broken { kind, sql });
    }

    /// The source's pipeline cannot start: the source and every view of it show `failed`
    /// with the reason (a view gets the source's reason, prefixed with the source).
    pub(super) fn fail_source(&self, catalog: &Catalog, source: &str, error: &str) {
        tracing::error!(source, error, "pipeline cannot start");
        self.board.update_source(source, |s| {
            s.status = "failed".into();
            s.error = Some(error.to_string());
        });
        for view in catalog.views.values().filter(|v| v.source == source) {
            self.board.update_view(&view.name, |v| {
                v.source = source.to_string();
                v.status = "failed".into();
                v.error = Some(format!("source \"{source}\" failed: {error}"));
            });
        }
        self.metrics
            .pipelines_failed
            .with_label_values(&[source])
            .inc();
    }
}
