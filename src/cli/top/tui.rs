//! `hvprof top`'s terminal UI (ratatui on crossterm): the frames of [`super::Feed`] as a list
//! of VMs that drills down to vCPUs and symbols, a pane of VM exits and steal, and the keys
//! of the issue (arrows/enter, `s`, `/`, `p`, `e`, `q`).
//!
//! The rows are the text lines of [`hvprof::output::top`] (one text rendering for batch mode
//! and the UI). The terminal is restored on every way out: `q`, Ctrl-C (a key in raw mode),
//! SIGTERM (the process token), an error (the guard's `Drop`) and a panic (a hook).

use std::collections::HashSet;
use std::io::Stdout;
use std::time::{Duration, Instant};

use anyhow::Context;
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
/// The terminal cannot be set up, read or drawn.
pub(super) fn run(feed: &mut Feed) -> anyhow::Result<()> {
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
                    self.selected_key = None;
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
        self.follow_key();
        let rows = self.rows();
        let here = rows.get(self.selected).map(|r| r.0);
        let moves = matches!(
            k.code,
            KeyCode::Up
                | KeyCode::Down
                | KeyCode::PageUp
                | KeyCode::PageDown
                | KeyCode::Home
                | KeyCode::End
                | KeyCode::Char('j' | 'k')
        );
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
        if moves {
            let rows = self.rows();
            self.selected = self.selected.min(rows.len().saturating_sub(1));
            self.selected_key = rows.get(self.selected).map(|r| r.0);
        } else {
            // Sorting, filtering, opening and closing keep the selected VM or thread.
            self.follow_key();
        }
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
            Some(t) => format!(
                "filter (VM name or symbol; Enter applies, empty clears, Esc cancels): {t}_"
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use hvprof::attribute::{Class, Symbol};
    use hvprof::counters::Rate;
    use hvprof::output::top::TopThread;
    use hvprof::report::SymbolRow;

    fn sym(name: &str) -> SymbolRow {
        SymbolRow {
            class: Class::GuestUser,
            symbol: Symbol::named(name, "[guest.user]"),
            samples: 10,
            percent: 100.0,
            inclusive_samples: 10,
            inclusive_percent: 100.0,
        }
    }

    fn vcpu(tid: i32, index: u32, top: &str) -> TopThread {
        TopThread {
            tid,
            vcpu: Some(index),
            name: format!("vcpu{index}"),
            cpu_percent: Some(50.0),
            share: 25.0,
            samples: 10,
            classes: Vec::new(),
            top_symbols: vec![sym(top)],
            steal: None,
            exits_per_s: None,
        }
    }

    fn vm(pid: i32, name: &str, cpu: f64, top: &str) -> TopVm {
        TopVm {
            pid,
            name: name.into(),
            state: VmState::Running,
            vcpu_count: 1,
            cpu_percent: Some(cpu),
            share: 50.0,
            samples: 20,
            lost: 0,
            classes: Vec::new(),
            top_symbols: vec![sym(top)],
            vcpus: vec![vcpu(pid + 1, 0, top)],
            other_threads: Vec::new(),
            exits: None,
        }
    }

    fn frame(vms: Vec<TopVm>) -> TopFrame {
        TopFrame {
            frame: 1,
            time_s: 1.0,
            interval_s: 1.0,
            event: "cpu-clock".into(),
            rate: Rate::Frequency(1000),
            mode: "threads".into(),
            cpu_measured: true,
            samples: 40,
            lost: 0,
            vms,
            host_other: None,
            exit_source: None,
            stat_interval: None,
            notes: Vec::new(),
        }
    }

    fn press(v: &mut View, code: KeyCode) -> Action {
        v.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(v: &mut View, s: &str) {
        for c in s.chars() {
            press(v, KeyCode::Char(c));
        }
    }

    fn keys(v: &View) -> Vec<Key> {
        v.rows().into_iter().map(|r| r.0).collect()
    }

    #[test]
    fn rows_drill_down_sort_and_filter() {
        let mut v = View::default();
        v.set_frame(frame(vec![
            vm(10, "small", 5.0, "idle"),
            vm(20, "big", 90.0, "spin"),
        ]));
        // Few VMs: opened when they first appear, most CPU first.
        assert_eq!(
            keys(&v)
                .into_iter()
                .filter(|k| *k != Key::Other)
                .collect::<Vec<_>>(),
            [
                Key::Vm(20),
                Key::Thread(20, 21),
                Key::Vm(10),
                Key::Thread(10, 11)
            ]
        );
        // ← on a VM closes it; Enter on its vCPU opens the vCPU's symbols.
        press(&mut v, KeyCode::Left);
        assert_eq!(keys(&v)[..2], [Key::Vm(20), Key::Vm(10)]);
        press(&mut v, KeyCode::Down);
        press(&mut v, KeyCode::Down);
        press(&mut v, KeyCode::Enter);
        assert_eq!(
            v.rows()[2],
            (Key::Thread(10, 11), thread_line(&vcpu(11, 0, "idle")))
        );
        assert_eq!(v.rows()[3].0, Key::Other);
        assert!(v.rows()[3].1.contains("idle"));
        // `s`: cpu → samples → name.
        press(&mut v, KeyCode::Char('s'));
        press(&mut v, KeyCode::Char('s'));
        assert_eq!(v.sort, Sort::Name);
        assert_eq!(keys(&v)[0], Key::Vm(20), "big < small");
        // The selection follows its row when the rows move (`s` → pid: VM 10 first).
        assert_eq!(v.selected_key, Some(Key::Thread(10, 11)));
        press(&mut v, KeyCode::Char('s'));
        assert_eq!(v.sort, Sort::Pid);
        v.follow_key();
        assert_eq!(v.selected, 1);
        assert_eq!(keys(&v)[..2], [Key::Vm(10), Key::Thread(10, 11)]);
        // `/` filters by symbol or name; an empty filter clears.
        press(&mut v, KeyCode::Char('/'));
        typed(&mut v, "SPIN");
        press(&mut v, KeyCode::Enter);
        assert_eq!(v.filter, "SPIN");
        assert!(keys(&v).iter().all(|k| !matches!(k, Key::Vm(10))));
        assert!(keys(&v).contains(&Key::Vm(20)));
        press(&mut v, KeyCode::Char('/'));
        press(&mut v, KeyCode::Enter);
        assert_eq!(
            keys(&v).iter().filter(|k| matches!(k, Key::Vm(_))).count(),
            2
        );
        // Keys typed into the filter are not commands.
        press(&mut v, KeyCode::Char('/'));
        assert_eq!(press(&mut v, KeyCode::Char('q')), Action::Stay);
        press(&mut v, KeyCode::Esc);
        assert_eq!(press(&mut v, KeyCode::Char('q')), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(v.key(ctrl_c), Action::Quit);
    }

    #[test]
    fn pause_holds_frames_and_e_toggles_the_exits_pane() {
        let mut v = View::default();
        v.set_frame(frame(vec![vm(10, "a", 5.0, "f")]));
        press(&mut v, KeyCode::Char('p'));
        let mut next = frame(vec![vm(10, "a", 7.0, "g")]);
        next.frame = 2;
        v.set_frame(next);
        assert_eq!(v.frame.as_ref().map(|f| f.frame), Some(1), "paused");
        press(&mut v, KeyCode::Char('p'));
        assert_eq!(v.frame.as_ref().map(|f| f.frame), Some(2), "resumed");
        assert!(!v.exits_lines().is_empty());
        press(&mut v, KeyCode::Char('e'));
        assert!(v.hide_exits);
    }
}
