//! The table: each figure beside its target, printed and written into `docs/benchmarks.md`
//! between markers, so the prose around it survives a new run.

use std::path::Path;

pub enum Verdict {
    Met,
    Missed,
    NotMeasured(String),
    /// A figure beside the targets, with no target of its own.
    Context,
}

pub struct Row {
    pub id: &'static str,
    pub what: String,
    pub figure: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(id: &'static str, what: impl Into<String>, figure: impl Into<String>, target: impl Into<String>, met: bool) -> Self {
        Row { id, what: what.into(), figure: figure.into(), target: target.into(), verdict: if met { Verdict::Met } else { Verdict::Missed } }
    }

    pub fn not_measured(id: &'static str, what: impl Into<String>, target: impl Into<String>, why: impl Into<String>) -> Self {
        Row { id, what: what.into(), figure: "—".into(), target: target.into(), verdict: Verdict::NotMeasured(why.into()) }
    }

    fn verdict(&self) -> String {
        match &self.verdict {
            Verdict::Met => "met".into(),
            Verdict::Missed => "**missed**".into(),
            Verdict::NotMeasured(why) => format!("not measured: {why}"),
            Verdict::Context => "no target".into(),
        }
    }
}

pub struct Report {
    pub header: Vec<String>,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            out.push_str(&format!("- {line}\n"));
        }
        out.push_str("\n| | measure | figure | target | verdict |\n| --- | --- | --- | --- | --- |\n");
        for r in &self.rows {
            out.push_str(&format!("| {} | {} | {} | {} | {} |\n", r.id, r.what, r.figure, r.target, r.verdict()));
        }
        out
    }

    pub fn all_met(&self) -> bool {
        self.rows.iter().all(|r| matches!(r.verdict, Verdict::Met | Verdict::Context))
    }
}

const BEGIN: &str = "<!-- bench:begin (written by `bash scripts/bench.sh`) -->";
const END: &str = "<!-- bench:end -->";

/// Replaces what is between the markers (or writes a new file with them).
pub fn write(path: &Path, table: &str) -> anyhow::Result<()> {
    let block = format!("{BEGIN}\n{table}{END}");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("# Benchmarks\n\n{block}\n"),
    };
    std::fs::write(path, new)?;
    Ok(())
}
