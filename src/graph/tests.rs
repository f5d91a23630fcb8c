//! Engine tests on toy stages: keys, hits, reasons, atomicity, locking.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;

/// Writes its `echo.text` param (and its input file, if any) to `out.txt`.
struct EchoStage {
    name: &'static str,
    text: String,
    upstream: Vec<&'static str>,
    input_root: Option<PathBuf>,
    runs: Arc<AtomicUsize>,
    panic: bool,
    delay: Duration,
}

impl EchoStage {
    fn new(name: &'static str, text: &str) -> EchoStage {
        EchoStage {
            name,
            text: text.into(),
            upstream: Vec::new(),
            input_root: None,
            runs: Arc::new(AtomicUsize::new(0)),
            panic: false,
            delay: Duration::ZERO,
        }
    }
}

impl Stage for EchoStage {
    fn name(&self) -> &'static str {
        self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn upstream(&self) -> Vec<&'static str> {
        self.upstream.clone()
    }
    fn params(&self) -> Params {
        [("echo.text".to_owned(), json!(self.text))].into()
    }
    fn inputs(&self) -> Result<Vec<Input>, StageError> {
        Ok(self
            .input_root
            .iter()
            .map(|root| Input::Files {
                label: "data".into(),
                root: root.clone(),
                files: vec!["in.txt".into()],
            })
            .collect())
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        fs::write(ctx.out_dir().join("partial.txt"), "half")?;
        std::thread::sleep(self.delay);
        if self.panic {
            panic!("echo stage exploded");
        }
        let mut text = self.text.clone();
        for up in &self.upstream {
            text += &fs::read_to_string(ctx.upstream_dir(up)?.join("out.txt"))?;
        }
        fs::write(ctx.out_dir().join("out.txt"), text)?;
        Ok(Outcome::default().with("chars", self.text.len()))
    }
}

fn run_graph(graph: &Graph, store: &Store) -> Result<Vec<StageRun>, GraphError> {
    let reporter = CollectingReporter::default();
    let fp = Fingerprinter::with_memo(store.memo_path());
    let resolved = resolve(graph, &graph.names(), &fp, &reporter)?;
    execute(&resolved, store, &BTreeSet::new(), &reporter)
}

fn plan_graph(graph: &Graph, store: &Store) -> Vec<PlanEntry> {
    let reporter = CollectingReporter::default();
    let fp = Fingerprinter::with_memo(store.memo_path());
    let resolved = resolve(graph, &graph.names(), &fp, &reporter).unwrap();
    plan(&resolved, store, &BTreeSet::new())
}

fn two_stage(a: &str, b: &str) -> Graph {
    let mut g = Graph::new();
    g.add(Box::new(EchoStage::new("first", a))).unwrap();
    let mut second = EchoStage::new("second", b);
    second.upstream = vec!["first"];
    g.add(Box::new(second)).unwrap();
    g
}

#[test]
fn a_second_run_is_all_cache_hits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let first = run_graph(&two_stage("a", "b"), &store).unwrap();
    assert!(first.iter().all(|r| r.status == StageStatus::Ran));
    let second = run_graph(&two_stage("a", "b"), &store).unwrap();
    assert!(second.iter().all(|r| r.status == StageStatus::Hit));
    assert_eq!(
        fs::read_to_string(second[1].entry.dir.join("out.txt")).unwrap(),
        "ba"
    );
}

#[test]
fn a_changed_param_reruns_that_stage_and_downstream_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    run_graph(&two_stage("a", "b"), &store).unwrap();
    let plan = plan_graph(&two_stage("A", "b"), &store);
    let PlanStatus::WillRun { reasons, .. } = &plan[0].status else {
        panic!("first should rerun")
    };
    assert_eq!(
        reasons,
        &[RerunReason::ParamChanged {
            key: "echo.text".into(),
            old: Some(json!("a")),
            new: Some(json!("A")),
        }]
    );
    let PlanStatus::WillRun { reasons, .. } = &plan[1].status else {
        panic!("second should rerun")
    };
    assert_eq!(
        reasons,
        &[RerunReason::UpstreamChanged {
            stage: "first".into()
        }]
    );
}

#[test]
fn a_param_the_stage_does_not_read_keeps_the_key() {
    // Changing only the downstream stage's value must leave the upstream key alone.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    run_graph(&two_stage("a", "b"), &store).unwrap();
    let plan = plan_graph(&two_stage("a", "B"), &store);
    assert!(plan[0].status.is_cached());
    assert!(!plan[1].status.is_cached());
}

#[test]
fn a_touched_but_unchanged_input_keeps_the_key_and_a_changed_one_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("in.txt");
    fs::write(&input, "x").unwrap();
    let old = SystemTime::now() - Duration::from_secs(60);
    let set_mtime = |t: SystemTime| {
        fs::File::options()
            .write(true)
            .open(&input)
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set_mtime(old);
    let store = Store::new(dir.path());
    let graph = || {
        let mut g = Graph::new();
        let mut s = EchoStage::new("first", "a");
        s.input_root = Some(data.path().to_path_buf());
        g.add(Box::new(s)).unwrap();
        g
    };
    run_graph(&graph(), &store).unwrap();
    set_mtime(old + Duration::from_secs(30));
    assert!(plan_graph(&graph(), &store)[0].status.is_cached());
    fs::write(&input, "y").unwrap();
    let plan = plan_graph(&graph(), &store);
    let PlanStatus::WillRun { reasons, .. } = &plan[0].status else {
        panic!("changed input must rerun")
    };
    let RerunReason::InputChanged {
        label, modified, ..
    } = &reasons[0]
    else {
        panic!("expected an input change, got {reasons:?}")
    };
    assert_eq!(label, "data");
    assert_eq!(modified, &["in.txt"]);
}

#[test]
fn a_panicking_stage_leaves_no_cache_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let mut g = Graph::new();
    let mut s = EchoStage::new("first", "a");
    s.panic = true;
    g.add(Box::new(s)).unwrap();
    let err = run_graph(&g, &store).unwrap_err();
    assert!(matches!(err, GraphError::Panic { .. }), "{err}");
    let stage_dir = dir.path().join("first");
    let entries: Vec<_> = fs::read_dir(&stage_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(entries.is_empty(), "left behind: {entries:?}");
    assert_eq!(fs::read_dir(stage_dir.join(".tmp")).unwrap().count(), 0);
    // And the next run does the work instead of trusting a half entry.
    let ok = run_graph(&two_stage("a", "b"), &store).unwrap();
    assert_eq!(ok[0].status, StageStatus::Ran);
}

#[test]
fn two_concurrent_executions_compute_a_shared_stage_once() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let make = || {
        let mut g = Graph::new();
        let mut s = EchoStage::new("first", "a");
        s.runs = Arc::clone(&runs);
        s.delay = Duration::from_millis(300);
        g.add(Box::new(s)).unwrap();
        g
    };
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let g = make();
            let root = dir.path().to_path_buf();
            std::thread::spawn(move || run_graph(&g, &Store::new(root)).unwrap())
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let statuses: BTreeSet<_> = results
        .iter()
        .map(|r| format!("{:?}", r[0].status))
        .collect();
    assert_eq!(statuses, BTreeSet::from(["Hit".into(), "Ran".into()]));
}

#[test]
fn until_selects_a_stage_and_its_ancestors_and_force_cascades() {
    let g = two_stage("a", "b");
    assert_eq!(g.until("first").unwrap(), ["first"]);
    assert_eq!(g.until("second").unwrap(), ["first", "second"]);
    assert!(
        g.until("third")
            .unwrap_err()
            .to_string()
            .contains("first, second")
    );
    assert_eq!(
        g.downstream("first").unwrap(),
        BTreeSet::from(["first", "second"])
    );
}

#[test]
fn forcing_a_stage_replaces_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let g = two_stage("a", "b");
    run_graph(&g, &store).unwrap();
    let reporter = CollectingReporter::default();
    let fp = Fingerprinter::without_memo();
    let resolved = resolve(&g, &g.names(), &fp, &reporter).unwrap();
    let forced = g.downstream("first").unwrap();
    let runs = execute(&resolved, &store, &forced, &reporter).unwrap();
    assert!(runs.iter().all(|r| r.status == StageStatus::Ran));
    assert!(matches!(
        store.lookup("first", &runs[0].key),
        Lookup::Found(_)
    ));
}

#[test]
fn a_stage_never_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let plan = plan_graph(&two_stage("a", "b"), &store);
    let PlanStatus::WillRun { reasons, nearest } = &plan[0].status else {
        panic!()
    };
    assert_eq!(reasons, &[RerunReason::NeverRun]);
    assert!(nearest.is_none());
}
