//! CREATE and DROP of sources and views.

use std::sync::Arc;

use super::context::planning_context;
use super::{Catalog, Engine, EngineError, Origin, Outcome};
use crate::catalog::{CatalogEntry, CatalogError, EntryKind, SourceDef, ViewDef, ViewTable};
use crate::operator::ViewOperator;
use crate::pipeline::SourceProgress;
use crate::plan::{plan_view, view_as_source, CreateSource, CreateView, SourceSchema};
use crate::source::{check_source, parse_source_spec};
use crate::state::{window_key_prefix, Table, WriteSet};

/// Statement text compared for "same definition": whitespace runs and a trailing `;` ignored.
fn normalized(sql: &str) -> String {
    sql.trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Refuses to drop `kind` `name` while the views `readers` read it.
fn refuse_in_use(kind: &'static str, name: &str, readers: &[&str]) -> Result<(), EngineError> {
    if readers.is_empty() {
        return Ok(());
    }
    Err(CatalogError::InUse {
        kind,
        name: name.to_string(),
        views: readers.join(", "),
    }
    .into())
}

/// A CREATE statement, as far as name clashes are concerned.
struct Creation<'a> {
    name: &'a str,
    kind: &'static str,
    tag: &'static str,
    if_not_exists: bool,
    sql: &'a str,
    origin: Origin,
}

impl Engine {
    /// `Some(outcome)` when the created name already exists and the statement is a no-op.
    fn existing(&self, catalog: &Catalog, c: Creation<'_>) -> Result<Option<Outcome>, EngineError> {
        let Creation {
            name,
            kind,
            tag,
            if_not_exists,
            sql,
            origin,
        } = c;
        let (existing_kind, existing_sql) = match (
            catalog.sources.get(name),
            catalog.views.get(name),
            catalog.broken.get(name),
        ) {
            (Some(s), _, _) => ("source", &s.sql),
            (_, Some(v), _) => ("materialized view", &v.sql),
            (_, _, Some(b)) if b.kind == EntryKind::Source => ("source", &b.sql),
            (_, _, Some(b)) => ("materialized view", &b.sql),
            _ => return Ok(None),
        };
        let same = normalized(existing_sql) == normalized(sql);
        if if_not_exists && existing_kind == kind {
            return Ok(Some(Outcome::Skipped(
                tag,
                format!("{kind} \"{name}\" already exists, skipping"),
            )));
        }
        if origin == Origin::PipelineFile && same {
            return Ok(Some(Outcome::Skipped(
                tag,
                format!("{kind} \"{name}\" already exists with this definition"),
            )));
        }
        Err(CatalogError::AlreadyExists {
            kind: existing_kind,
            name: name.to_string(),
        }
        .into())
    }

    fn persist_entry(
        &self,
        catalog: &mut Catalog,
        kind: EntryKind,
        name: &str,
        sql: &str,
    ) -> Result<(), EngineError> {
        let entry = CatalogEntry {
            kind,
            name: name.to_string(),
            sql: sql.trim().to_string(),
            seq: catalog.next_seq,
        };
        catalog.next_seq += 1;
        let mut ws = WriteSet::default();
        if kind == EntryKind::View {
            // An answer the LLM worker stored for a dropped view of the same name while the
            // drop was written must not fill (or skip asking for) this view's rows.
            ws.delete_prefix(Table::LlmAnalyses, window_key_prefix(name));
        }
        ws.put(
            Table::Catalog,
            CatalogEntry::key(kind, name),
            serde_json::to_vec(&entry).expect("entries serialize"),
        );
        self.store.write(&ws)?;
        Ok(())
    }

    /// Parses a source's options and adds it to the catalog (without persisting it or
    /// checking that its input opens).
    pub(super) fn define_source(
        &self,
        catalog: &mut Catalog,
        decl: CreateSource,
        sql: String,
    ) -> Result<(), EngineError> {
        let spec = parse_source_spec(&decl.name, &decl.options, &decl.include)?;
        self.insert_source(catalog, SourceDef::new(decl, spec, sql));
        Ok(())
    }

    fn insert_source(&self, catalog: &mut Catalog, def: SourceDef) {
        self.board.update_source(&def.name, |s| {
            s.connector = def.spec.connector().into();
            s.status = "idle".into();
        });
        catalog.sources.insert(def.name.clone(), Arc::new(def));
    }

    /// Plans a view and adds it to the catalog and the query context (without persisting it).
    pub(super) async fn add_view(
        &self,
        catalog: &mut Catalog,
        decl: CreateView,
        sql: String,
    ) -> Result<String, EngineError> {
        let sources: Vec<SourceSchema> = catalog
            .sources
            .values()
            .map(|s| s.planner_schema())
            .collect();
        let views: Vec<(String, Arc<ViewDef>)> = catalog
            .views
            .iter()
            .map(|(name, def)| (name.clone(), def.clone()))
            .collect();
        // A view may read a source, or another view's final rows.
        let find = |name: &str| match sources.iter().find(|s| s.name == name) {
            Some(source) => Ok(Some(source.clone())),
            None => match views.iter().find(|(n, _)| n == name) {
                Some((n, def)) => view_as_source(n, &def.plan).map(Some),
                None => Ok(None),
            },
        };
        let mut plan = plan_view(&decl.query, &find, &planning_context()).await?;
        if decl.retention_ms.is_some() && plan.append && plan.watermark.is_none() {
            return Err(crate::plan::PlanError::Invalid(format!(
                "retention drops rows by event time, and source \"{}\" has none: declare WATERMARK FOR <column> AS <column> - INTERVAL '...' on it",
                plan.source
            ))
            .into());
        }
        if decl.retention_ms.is_some() && plan.window.is_none() && !plan.append {
            return Err(crate::plan::PlanError::Invalid(
                "retention applies to windowed views (TUMBLE or HOP) and append-only views; a view without windows keeps one row per group".into(),
            )
            .into());
        }
        plan.retention_ms = decl.retention_ms;
        let plan = Arc::new(plan);
        let table = ViewTable::new(
            decl.name.clone(),
            plan.clone(),
            self.store.clone(),
            self.metrics.clone(),
        )?
        .with_definition(decl.query.to_string());
        self.ctx
            .register_table(decl.name.as_str(), Arc::new(table))?;
        // A view over views runs in the pipeline of the source at the root of its chain.
        let source = match &plan.upstream {
            Some(up) => catalog
                .views
                .get(&up.view)
                .map(|v| v.source.clone())
                .unwrap_or_default(),
            None => plan.source.clone(),
        };
        self.board.update_view(&decl.name, |v| {
            v.source = source.clone();
            v.status = "running".into();
        });
        catalog.views.insert(
            decl.name.clone(),
            Arc::new(ViewDef {
                name: decl.name,
                source: source.clone(),
                plan,
                sql,
            }),
        );
        Ok(source)
    }

    pub(super) async fn create_source(
        &self,
        catalog: &mut Catalog,
        decl: CreateSource,
        sql: &str,
        origin: Origin,
    ) -> Result<Outcome, EngineError> {
        const TAG: &str = "CREATE SOURCE";
        let creation = Creation {
            name: &decl.name,
            kind: "source",
            tag: TAG,
            if_not_exists: decl.if_not_exists,
            sql,
            origin,
        };
        if let Some(outcome) = self.existing(catalog, creation)? {
            return Ok(outcome);
        }
        let name = decl.name.clone();
        let spec = parse_source_spec(&decl.name, &decl.options, &decl.include)?;
        let def = SourceDef::new(decl, spec, sql.to_string());
        check_source(&def.spec, def.schema.clone())?;
        self.insert_source(catalog, def);
        if let Err(e) = self.persist_entry(catalog, EntryKind::Source, &name, sql) {
            catalog.sources.remove(&name);
            self.board.sources.write().remove(&name);
            return Err(e);
        }
        Ok(Outcome::Done(TAG))
    }

    pub(super) async fn create_view(
        &self,
        catalog: &mut Catalog,
        decl: CreateView,
        sql: &str,
        origin: Origin,
    ) -> Result<Outcome, EngineError> {
        const TAG: &str = "CREATE MATERIALIZED VIEW";
        let creation = Creation {
            name: &decl.name,
            kind: "materialized view",
            tag: TAG,
            if_not_exists: decl.if_not_exists,
            sql,
            origin,
        };
        if let Some(outcome) = self.existing(catalog, creation)? {
            return Ok(outcome);
        }
        let name = decl.name.clone();
        let source = self.add_view(catalog, decl, sql.to_string()).await?;
        // The source may have changed since it was created (a file deleted): its pipeline
        // must be able to start before the view is stored.
        let def = catalog.sources.get(&source).cloned();
        let checked = def.map_or(Ok(()), |d| check_source(&d.spec, d.schema.clone()));
        if let Err(e) = checked
            .map_err(EngineError::from)
            .and_then(|()| self.persist_entry(catalog, EntryKind::View, &name, sql))
        {
            self.forget_view(catalog, &name);
            return Err(e);
        }
        if let Err(e) = self.try_restart_pipeline(catalog, &source).await? {
            // Nothing stays stored that cannot start; the source's other views go on.
            self.delete_stored_view(&name)?;
            self.forget_view(catalog, &name);
            self.restart_pipeline(catalog, &source).await?;
            return Err(e);
        }
        Ok(Outcome::Done(TAG))
    }

    /// Deletes a view's definition and everything it stored, in one write.
    fn delete_stored_view(&self, name: &str) -> Result<(), EngineError> {
        let mut ws = WriteSet::default();
        ViewOperator::delete_all(name, &mut ws);
        ws.delete(Table::Catalog, CatalogEntry::key(EntryKind::View, name));
        self.store.write(&ws)?;
        Ok(())
    }

    fn forget_view(&self, catalog: &mut Catalog, name: &str) {
        catalog.views.remove(name);
        let _ = self.ctx.deregister_table(name);
        self.board.views.write().remove(name);
    }

    pub(super) async fn drop_view(
        &self,
        catalog: &mut Catalog,
        name: &str,
        if_exists: bool,
    ) -> Result<Outcome, EngineError> {
        const TAG: &str = "DROP MATERIALIZED VIEW";
        if catalog.broken.get(name).map(|b| b.kind) == Some(EntryKind::View) {
            self.delete_stored_view(name)?;
            catalog.broken.remove(name);
            self.board.views.write().remove(name);
            return Ok(Outcome::Done(TAG));
        }
        let readers: Vec<&str> = catalog
            .views
            .values()
            .filter(|v| v.plan.upstream.as_ref().is_some_and(|u| u.view == name))
            .map(|v| v.name.as_str())
            .collect();
        refuse_in_use("materialized view", name, &readers)?;
        let Some(view) = catalog.views.get(name).cloned() else {
            if if_exists {
                return Ok(Outcome::Skipped(
                    TAG,
                    format!("materialized view \"{name}\" does not exist, skipping"),
                ));
            }
            return Err(CatalogError::NotFound {
                kind: "materialized view",
                name: name.to_string(),
            }
            .into());
        };
        if let Some(runner) = catalog.runners.remove(&view.source) {
            let _ = tokio::task::spawn_blocking(move || runner.stop()).await;
        }
        self.delete_stored_view(name)?;
        self.forget_view(catalog, name);
        self.restart_pipeline(catalog, &view.source).await?;
        Ok(Outcome::Done(TAG))
    }

    pub(super) async fn drop_source(
        &self,
        catalog: &mut Catalog,
        name: &str,
        if_exists: bool,
    ) -> Result<Outcome, EngineError> {
        const TAG: &str = "DROP SOURCE";
        let broken = catalog.broken.get(name).map(|b| b.kind) == Some(EntryKind::Source);
        if !broken && !catalog.sources.contains_key(name) {
            if if_exists {
                return Ok(Outcome::Skipped(
                    TAG,
                    format!("source \"{name}\" does not exist, skipping"),
                ));
            }
            return Err(CatalogError::NotFound {
                kind: "source",
                name: name.to_string(),
            }
            .into());
        }
        let users: Vec<&str> = catalog
            .views
            .values()
            .filter(|v| v.source == name)
            .map(|v| v.name.as_str())
            .collect();
        refuse_in_use("source", name, &users)?;
        if let Some(runner) = catalog.runners.remove(name) {
            let _ = tokio::task::spawn_blocking(move || runner.stop()).await;
        }
        let mut ws = WriteSet::default();
        ws.delete(Table::Catalog, CatalogEntry::key(EntryKind::Source, name));
        ws.delete(Table::Progress, SourceProgress::key(name));
        ws.delete_prefix(Table::DeadLetters, window_key_prefix(name));
        self.store.write(&ws)?;
        catalog.sources.remove(name);
        catalog.unopened.remove(name);
        if broken {
            catalog.broken.remove(name);
        }
        self.board.sources.write().remove(name);
        Ok(Outcome::Done(TAG))
    }
}
