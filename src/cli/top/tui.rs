//! `hvprof top`'s terminal UI (ratatui on crossterm): the frames of [`super::Feed`] as a list
//! of VMs that drills down to vCPUs and symbols, a pane of VM exits and steal, and the keys
//! of the issue (arrows/enter, `s`, `/`, `p`, `e`, `q`).
//!
//! The rows are the text lines of [`hvprof::output::top`] (one text rendering for batch mode
//! and the UI). The terminal is restored on every way out: `q`, Ctrl-C (a key in raw mode),
//! SIGTERM (the process token), an error (the guard's `Drop`) and a panic (a hook).

use std::collections::HashSet;
use std::io::{IsTerminal, Stdout};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, List, ListState, Paragraph};
use ratatui::{Frame, Terminal};

use hvprof::output::top::{
    column_header, exits_line, header_line, steal_line, symbol_line, thread_line, vm_line,
    TopFrame, TopVm, VmState,
};

use super::Feed;

/// Symbols shown under an expanded VM or thread.
const SYMBOLS_SHOWN: usize = 5;

/// At most this many VMs are expanded when they first appear.
const AUTO_EXPAND: usize = 4;

/// Runs the UI until `q`, Ctrl-C, a signal or a failed session.
///
/// # Errors
/// stdout is not a terminal, or the terminal cannot be set up or drawn.
pub(super) fn run(feed: &mut Feed) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!("stdout is not a terminal: use -b for batch mode");
    }
    let mut term = Term::enter()?;
    let mut view = View::default();
    let mut dirty = true;
    let mut last_draw = Instant::now();
    loop {
        if dirty || last_draw.elapsed() >= Duration::from_secs(1) {
            term.terminal
                .draw(|f| view.draw(f))
                .context("cannot draw")?;
            dirty = false;
            last_draw = Instant::now();
        }
        if event::poll(Duration::from_millis(50)).context("cannot read the terminal")? {
            match event::read().context("cannot read the terminal")? {
                Event::Key(k) if k.kind != KeyEventKind::Release && view.key(k) == Action::Quit => {
                    feed.stop("quit (q or Ctrl-C)");
                    break;
                }
                _ => {}
            }
            dirty = true;
        }
        for _ in 0..64 {
            match feed.next_frame(Duration::ZERO)? {
                Some(Some(f)) => view.set_frame(f),
                Some(None) => break,
                None => {
                    view.ended = feed.ended();
                    break;
                }
            }
            dirty = true;
        }
        view.stat_error = feed.stat_error.clone();
        if feed.failed() || super::super::signal::stop_requested() {
            break;
        }
    }
    Ok(())
}

/// The terminal in raw mode on the alternate screen; restored on drop.
struct Term {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Term {
    fn enter() -> anyhow::Result<Term> {
        install_panic_hook();
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let mut out = std::io::stdout();
        let r = crossterm::execute!(out, EnterAlternateScreen, crossterm::cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(out)));
        match r {
            Ok(terminal) => Ok(Term { terminal }),
            Err(e) => {
                restore();
                Err(e).context("cannot set up the terminal")
            }
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen, shows the cursor. Safe to call twice.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// A panic restores the terminal before the message is printed.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
    });
}

/// What a row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Vm(i32),
    Thread(i32, i32),
    /// A symbol row.
    Other,
}

/// `s` cycles through these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Sort {
    #[default]
    Cpu,
    Samples,
    Name,
    Pid,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Cpu => Sort::Samples,
            Sort::Samples => Sort::Name,
            Sort::Name => Sort::Pid,
            Sort::Pid => Sort::Cpu,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sort::Cpu => "cpu",
            Sort::Samples => "samples",
            Sort::Name => "name",
            Sort::Pid => "pid",
        }
    }
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    Stay,
}

/// The UI's state: the frame shown and how it is shown.
#[derive(Default)]
struct View {
    frame: Option<TopFrame>,
    /// The newest frame while paused.
    held: Option<TopFrame>,
    paused: bool,
    sort: Sort,
    filter: String,
    /// The filter being typed after `/`.
    editing: Option<String>,
    hide_exits: bool,
    expanded: HashSet<Key>,
    known: HashSet<i32>,
    selected: usize,
    selected_key: Option<Key>,
    notes: Vec<String>,
    ended: Option<String>,
    stat_error: Option<String>,
}

impl View {
    fn set_frame(&mut self, f: TopFrame) {
        self.notes.extend(f.notes.iter().cloned());
        for v in &f.vms {
            if self.known.insert(v.pid) && f.vms.len() <= AUTO_EXPAND {
                self.expanded.insert(Key::Vm(v.pid));
            }
        }
        if self.paused {
            self.held = Some(f);
        } else {
            self.frame = Some(f);
        }
    }

    /// The VMs shown: filtered, sorted, gone VMs last.
    fn vms(&self) -> Vec<&TopVm> {
        let Some(f) = &self.frame else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        let mut vms: Vec<&TopVm> = f.vms.iter().filter(|v| matches(v, &needle)).collect();
        vms.sort_by(|a, b| {
            let gone = (a.state == VmState::Gone).cmp(&(b.state == VmState::Gone));
            let key = match self.sort {
                Sort::Cpu => b
                    .cpu_percent
                    .unwrap_or(b.share)
                    .total_cmp(&a.cpu_percent.unwrap_or(a.share)),
                Sort::Samples => b.samples.cmp(&a.samples),
                Sort::Name => a.name.cmp(&b.name),
                Sort::Pid => a.pid.cmp(&b.pid),
            };
            gone.then(key).then(a.pid.cmp(&b.pid))
        });
        vms
    }

    /// Every row: VMs, and under an expanded VM its threads (symbols under an expanded
    /// thread) and its top symbols.
    fn rows(&self) -> Vec<(Key, String)> {
        let mut rows = Vec::new();
        for v in self.vms() {
            rows.push((Key::Vm(v.pid), vm_line(v)));
            if !self.expanded.contains(&Key::Vm(v.pid)) {
                continue;
            }
            for t in v.vcpus.iter().chain(&v.other_threads) {
                let k = Key::Thread(v.pid, t.tid);
                rows.push((k, thread_line(t)));
                if self.expanded.contains(&k) {
                    for s in t.top_symbols.iter().take(SYMBOLS_SHOWN) {
                        rows.push((Key::Other, format!("     {}", symbol_line(s))));
                    }
                }
            }
            for s in v.top_symbols.iter().take(SYMBOLS_SHOWN) {
                rows.push((Key::Other, symbol_line(s)));
            }
        }
        rows
    }

    /// Handles one key.
    fn key(&mut self, k: KeyEvent) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(text) = &mut self.editing {
            match k.code {
                KeyCode::Enter => {
                    self.filter = std::mem::take(text);
                    self.editing = None;
                    self.selected = 0;
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            return Action::Stay;
        }
        let rows = self.rows();
        let here = rows.get(self.selected).map(|r| r.0);
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.selected += 1,
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::PageDown => self.selected += 10,
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = rows.len().saturating_sub(1),
            KeyCode::Enter => {
                if let Some(k) = here.filter(|k| *k != Key::Other) {
                    if !self.expanded.remove(&k) {
                        self.expanded.insert(k);
                    }
                }
            }
            KeyCode::Right | KeyCode::Char('+') => {
                if let Some(k) = here.filter(|k| *k != Key::Other) {
                    self.expanded.insert(k);
                }
            }
            KeyCode::Left | KeyCode::Char('-') => match here {
                Some(k @ Key::Vm(_)) => {
                    self.expanded.remove(&k);
                }
                // A thread row that is not expanded: collapse its VM and select it.
                Some(k @ Key::Thread(pid, _)) if !self.expanded.remove(&k) => {
                    self.expanded.remove(&Key::Vm(pid));
                    self.selected_key = Some(Key::Vm(pid));
                    self.follow_key();
                    return Action::Stay;
                }
                _ => {}
            },
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('/') => self.editing = Some(String::new()),
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Char('p') => {
                self.paused = !self.paused;
                if !self.paused {
                    if let Some(f) = self.held.take() {
                        self.frame = Some(f);
                    }
                }
            }
            KeyCode::Char('e') => self.hide_exits = !self.hide_exits,
            _ => {}
        }
        let rows = self.rows();
        self.selected = self.selected.min(rows.len().saturating_sub(1));
        self.selected_key = rows.get(self.selected).map(|r| r.0);
        Action::Stay
    }

    /// Keeps the selection on the same VM or thread when rows move.
    fn follow_key(&mut self) {
        let rows = self.rows();
        if let Some(k) = self.selected_key.filter(|k| *k != Key::Other) {
            if let Some(i) = rows.iter().position(|r| r.0 == k) {
                self.selected = i;
            }
        }
        self.selected = self.selected.min(rows.len().saturating_sub(1));
    }

    fn draw(&mut self, f: &mut Frame<'_>) {
        self.follow_key();
        let exits: Vec<Line<'static>> = if self.hide_exits {
            Vec::new()
        } else {
            self.exits_lines()
        };
        let exits_h = if exits.is_empty() {
            0
        } else {
            (exits.len() as u16 + 2).min(f.area().height / 3)
        };
        let [head, body, pane, foot] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Min(3),
            Constraint::Length(exits_h),
            Constraint::Length(1),
        ])
        .areas(f.area());
        f.render_widget(Paragraph::new(self.head_lines()), head);
        self.draw_rows(f, body);
        if exits_h > 0 {
            let block = Block::bordered().title(" VM exits and steal (hvprof stat; e hides) ");
            f.render_widget(Paragraph::new(exits).block(block), pane);
        }
        let foot_text = match &self.editing {
            Some(t) => format!("filter (VM name or symbol; Enter applies, empty clears, Esc cancels): {t}_"),
            None => {
                "↑↓ move  Enter/→ expand  ← collapse  s sort  / filter  p pause  e exits  q quit"
                    .to_string()
            }
        };
        f.render_widget(
            Paragraph::new(foot_text).style(Style::new().add_modifier(Modifier::REVERSED)),
            foot,
        );
    }

    fn head_lines(&self) -> Vec<Line<'static>> {
        let first = match &self.frame {
            Some(fr) => header_line(fr),
            None => "hvprof top: waiting for the first snapshot…".to_string(),
        };
        let mut second = format!("sort: {}", self.sort.label());
        if !self.filter.is_empty() {
            second.push_str(&format!("  filter: {}", self.filter));
        }
        if self.paused {
            second.push_str("  [paused]");
        }
        if let Some(e) = &self.ended {
            second.push_str(&format!("  session ended: {e} (q quits)"));
        } else if let Some(n) = self.notes.last() {
            second.push_str(&format!("  note: {n}"));
        }
        let cpu = self.frame.as_ref().is_none_or(|f| f.cpu_measured);
        vec![
            Line::from(first),
            Line::from(second),
            Line::styled(
                column_header(cpu),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        ]
    }

    fn draw_rows(&self, f: &mut Frame<'_>, area: Rect) {
        let rows = self.rows();
        let items: Vec<Line<'static>> = rows
            .into_iter()
            .map(|(k, s)| match k {
                Key::Vm(_) => Line::styled(s, Style::new().add_modifier(Modifier::BOLD)),
                _ => Line::from(s),
            })
            .collect();
        let list = List::new(items).highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        let mut state = ListState::default().with_selected(Some(self.selected));
        f.render_stateful_widget(list, area, &mut state);
    }

    fn exits_lines(&self) -> Vec<Line<'static>> {
        let mut lines = Vec::new();
        if let Some(e) = &self.stat_error {
            lines.push(Line::from(format!("hvprof stat failed: {e}")));
        }
        for v in self.vms() {
            if v.state == VmState::Running {
                lines.push(Line::from(format!("{} {}", exits_line(v), v.name)));
                lines.push(Line::from(steal_line(v)));
            }
        }
        lines
    }
}

/// Whether a VM matches the filter (lowercase): its name, pid or one of its symbols.
fn matches(v: &TopVm, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let has = |s: &str| s.to_lowercase().contains(needle);
    has(&v.name)
        || v.pid.to_string() == needle
        || v.top_symbols.iter().any(|s| has(&s.symbol.name))
        || v.vcpus
            .iter()
            .chain(&v.other_threads)
            .flat_map(|t| &t.top_symbols)
            .any(|s| has(&s.symbol.name))
}
