//! What `pfdemo watch` draws, from a [`Snapshot`] alone: the page map, the latest faults, the
//! counters and the latency histogram, laid out for the terminal's size. Drawing reads no
//! file, so the tests draw known snapshots and check the cells.
//!
//! Every character can be ASCII ([`Glyphs::ASCII`]): the VM's serial console (TERM `linux`
//! or `vt100`) has no line-drawing font to rely on. Emphasis is bold or reversed only, which
//! a VT100 has; no colours.

use pfdemo::events::Event;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// How one page is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Nothing behind it (pid: no page-table entry; instance: no frame).
    Absent,
    /// Mapped by a PTE (pid), or has a frame (instance).
    Present,
    /// Mapped by a PMD leaf, a whole 2 MiB frame at once (pid, `huge=1`).
    Pmd,
}

/// A range of pages drawn together: one device mapping of the process, or the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// One line about the range, above its cells.
    pub title: String,
    /// The first page's address (`by_address`) or page offset (an instance's pages).
    pub first: u64,
    pub by_address: bool,
    pub pages: Vec<Page>,
    /// Pages that were absent at the previous frame: drawn bold, to show the map filling in.
    pub fresh: Vec<bool>,
}

/// Everything one frame shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// What is watched: `pid 123` or `instance 4`.
    pub target: String,
    pub regions: Vec<Region>,
    /// Why the map is empty or stale (the process has gone, ...).
    pub map_note: Option<String>,
    /// The counters in the module's order: name, value, change per second since the last
    /// frame (none at the first).
    pub counters: Vec<(String, u64, Option<f64>)>,
    /// The module's settings (`prefault=1 huge=0 ...`), for the status line.
    pub settings: String,
    /// The `latency` histogram: (bucket's upper bound in ns, count).
    pub latency: Vec<(u64, u64)>,
    /// The target's latest faults, newest first.
    pub faults: Vec<Event>,
    /// Why there are no faults to list (the recorder is off or absent), with the fix.
    pub faults_note: Option<String>,
    /// Records the recorder's ring overwrote before this view read them.
    pub dropped: u64,
    /// CLOCK_MONOTONIC at the start of the watch: fault times are shown from it.
    pub start_ns: u64,
    pub interval_ms: u64,
    /// A note for the status line (the terminal's size is unknown, ...).
    pub status_note: Option<String>,
}

/// The characters of the drawing.
#[derive(Debug, Clone, Copy)]
pub struct Glyphs {
    /// A cell by the share of its pages that are present: none, under half, half or more, all.
    pub levels: [char; 4],
    /// A cell whose pages are all mapped by PMD leaves.
    pub pmd: char,
    pub bar: char,
    pub border: border::Set,
}

impl Glyphs {
    pub const ASCII: Glyphs = Glyphs {
        levels: ['.', ':', '=', '#'],
        pmd: 'H',
        bar: '#',
        border: border::Set {
            top_left: "+",
            top_right: "+",
            bottom_left: "+",
            bottom_right: "+",
            vertical_left: "|",
            vertical_right: "|",
            horizontal_top: "-",
            horizontal_bottom: "-",
        },
    };
    pub const UNICODE: Glyphs = Glyphs {
        levels: ['·', '░', '▒', '█'],
        pmd: 'H',
        bar: '█',
        border: border::PLAIN,
    };

    /// The cell of a group of pages.
    pub fn cell(&self, pages: &[Page]) -> char {
        let present = pages.iter().filter(|p| **p != Page::Absent).count();
        if !pages.is_empty() && pages.iter().all(|p| *p == Page::Pmd) {
            self.pmd
        } else if present == 0 {
            self.levels[0]
        } else if present == pages.len() {
            self.levels[3]
        } else if present * 2 < pages.len() {
            self.levels[1]
        } else {
            self.levels[2]
        }
    }
}

/// Width of the right-hand column (counters and latency).
const SIDE: u16 = 38;
/// Cells per map row at most: a row label every 64 pages keeps addresses easy to read.
const MAX_ROW: usize = 64;

/// How the map is laid out in a panel: pages per cell and cells per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub per_cell: usize,
    pub per_row: usize,
    pub label: usize,
    /// The panel's inner width, for the legend's lines.
    pub width: u16,
}

impl Grid {
    /// The layout for `regions` in an inner area of `width` x `rows` (a line for the legend,
    /// one for each region's title): one page a cell if they fit, else the fewest pages a
    /// cell (a power of two, so cells start at round addresses) with which they do.
    pub fn fit(regions: &[Region], width: u16, rows: u16) -> Grid {
        let label = label_width(regions);
        let room = (width as usize).saturating_sub(label + 1).max(1);
        let per_row = prev_power_of_two(room).min(MAX_ROW);
        let mut grid = Grid {
            per_cell: 1,
            per_row,
            label,
            width,
        };
        // The legend of a grouped map is the longer one: reserve its lines.
        let legend = Grid {
            per_cell: 2,
            ..grid
        }
        .legend(regions, &Glyphs::ASCII, width)
        .len();
        let rows = (rows as usize).saturating_sub(legend + regions.len());
        while grid.per_cell < (1 << 40) && Self::rows_for(regions, grid.per_cell, per_row) > rows {
            grid.per_cell *= 2;
        }
        grid
    }

    fn rows_for(regions: &[Region], per_cell: usize, per_row: usize) -> usize {
        regions
            .iter()
            .map(|r| r.pages.len().div_ceil(per_cell).div_ceil(per_row))
            .sum()
    }

    /// The map's lines at this layout: each region's title, then its rows, then the legend.
    pub fn lines(&self, regions: &[Region], g: &Glyphs) -> Vec<Line<'static>> {
        let mut lines = Vec::new();
        let row_pages = self.per_cell * self.per_row;
        for r in regions {
            lines.push(Line::styled(
                r.title.clone(),
                Style::new().add_modifier(Modifier::BOLD),
            ));
            for (row, pages) in r.pages.chunks(row_pages).enumerate() {
                let first = (row * row_pages) as u64;
                let label = if r.by_address {
                    format!("{:0w$x} ", r.first + first * 4096, w = self.label)
                } else {
                    format!("{:>w$} ", r.first + first, w = self.label)
                };
                let mut spans = vec![Span::raw(label)];
                for (c, cell) in pages.chunks(self.per_cell).enumerate() {
                    let at = row * row_pages + c * self.per_cell;
                    let fresh = r
                        .fresh
                        .get(at..at + cell.len())
                        .is_some_and(|f| f.iter().any(|f| *f));
                    let style = if fresh {
                        Style::new().add_modifier(Modifier::BOLD)
                    } else {
                        Style::new()
                    };
                    spans.push(Span::styled(g.cell(cell).to_string(), style));
                }
                lines.push(Line::from(spans));
            }
        }
        lines.extend(
            self.legend(regions, g, self.width)
                .into_iter()
                .map(Line::raw),
        );
        lines
    }

    /// What the characters mean, in as many lines of `width` as it takes.
    fn legend(&self, regions: &[Region], g: &Glyphs, width: u16) -> Vec<String> {
        let [none, low, high, all] = g.levels;
        let by_address = regions.iter().any(|r| r.by_address);
        let mut items = vec![
            match self.per_cell {
                1 => "1 cell = 1 page:".to_string(),
                n => format!("1 cell = {n} pages:"),
            },
            format!("{none} none"),
        ];
        if self.per_cell > 1 {
            items.push(format!("{low} <1/2"));
            items.push(format!("{high} >=1/2"));
            items.push(format!("{all} all"));
        } else if by_address {
            items.push(format!("{all} mapped"));
        } else {
            items.push(format!("{all} has a frame"));
        }
        if by_address {
            items.push(format!("{} PMD (2 MiB)", g.pmd));
        }
        let mut lines = vec![String::new()];
        for item in items {
            let last = lines.last_mut().unwrap();
            if !last.is_empty() && last.chars().count() + 1 + item.chars().count() > width as usize
            {
                lines.push(item);
            } else {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(&item);
            }
        }
        lines
    }
}

/// The width of a row's label: 12 hex digits hold any user address of 4-level paging; page
/// offsets take as many digits as the largest.
fn label_width(regions: &[Region]) -> usize {
    if regions.iter().any(|r| r.by_address) {
        let top = regions
            .iter()
            .map(|r| r.first + r.pages.len() as u64 * 4096)
            .max()
            .unwrap_or(0);
        format!("{top:x}").len().max(12)
    } else {
        let top = regions
            .iter()
            .map(|r| r.first + r.pages.len() as u64)
            .max()
            .unwrap_or(0);
        top.to_string().len().max(6)
    }
}

fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// The heading of the fault list, aligned with [`fault_row`].
pub const FAULTS_HEADER: &str =
    "  time (s)    tid address      how  path     out           pfn  total ns";

/// One fault: seconds since the watch began, thread, address, how, path, outcome, frame, and
/// the handler's whole time.
pub fn fault_row(e: &Event, start_ns: u64) -> String {
    let t = (e.t_ns as i128 - start_ns as i128) as f64 / 1e9;
    let pfn = e.pfn.map_or("-".to_string(), |p| format!("{p:#x}"));
    format!(
        "{t:>10.3} {:>6} {:012x} {:<4} {:<8} {:<8} {pfn:>8} {:>9}",
        e.tid, e.addr, e.how, e.path, e.out, e.total_ns
    )
}

/// One counter: name, value, change per second.
pub fn counter_row(name: &str, value: u64, rate: Option<f64>) -> String {
    // A counter that did not move shows no rate, so that the ones that did stand out.
    let rate = match rate {
        None | Some(0.0) => String::new(),
        Some(r) if r.abs() >= 100.0 || r == r.trunc() => format!("{r:+.0}/s"),
        Some(r) => format!("{r:+.1}/s"),
    };
    format!("{name:<18}{value:>9} {rate:>8}")
}

/// The histogram's rows: bucket, count, and a bar scaled to the largest bucket.
pub fn latency_rows(latency: &[(u64, u64)], width: usize, bar: char) -> Vec<String> {
    let top = latency.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1);
    let room = width.saturating_sub(23).max(1) as u64;
    latency
        .iter()
        .map(|(le, count)| {
            let n = (count * room).div_ceil(top) as usize;
            format!("<{le:>9} ns {count:>8} {}", bar.to_string().repeat(n))
        })
        .collect()
}

fn block(title: String, g: &Glyphs) -> Block<'static> {
    Block::bordered().border_set(g.border).title(Span::styled(
        title,
        Style::new().add_modifier(Modifier::BOLD),
    ))
}

/// The fault panel's height for a terminal of `height` rows.
fn faults_height(height: u16) -> u16 {
    (height.saturating_sub(1) / 3).clamp(5, 16)
}

/// Draws `s` over the whole frame.
pub fn draw(frame: &mut Frame, s: &Snapshot, g: &Glyphs) {
    render(frame.area(), frame.buffer_mut(), s, g);
}

/// Draws `s` into `area` of `buf`.
pub fn render(area: Rect, buf: &mut Buffer, s: &Snapshot, g: &Glyphs) {
    use ratatui::widgets::Widget;
    let [status, top, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(faults_height(area.height)),
    ])
    .areas(area);
    // What matters first, for a narrow terminal: the settings come last.
    let mut line = format!(
        "pfdemo watch: {}  q quits  every {} ms",
        s.target, s.interval_ms
    );
    if let Some(note) = &s.status_note {
        line.push_str("  ");
        line.push_str(note);
    }
    line.push_str("  ");
    line.push_str(&s.settings);
    Paragraph::new(line)
        .style(Style::new().add_modifier(Modifier::REVERSED))
        .render(status, buf);

    let [map, side] =
        Layout::horizontal([Constraint::Min(20), Constraint::Length(SIDE)]).areas(top);
    render_map(map, buf, s, g);

    // Every bucket of the histogram (a dozen at most) while three counters still fit; the
    // counters get the rest, in the module's order, the fault counts first.
    let latency_h = (s.latency.len().max(1) as u16 + 2)
        .min(side.height.saturating_sub(5))
        .max(3);
    let [counters, latency] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(latency_h)]).areas(side);
    let rows: Vec<Line> = s
        .counters
        .iter()
        .map(|(n, v, r)| Line::raw(counter_row(n, *v, *r)))
        .collect();
    Paragraph::new(rows)
        .block(block("counters      value   change".into(), g))
        .render(counters, buf);

    let total: u64 = s.latency.iter().map(|(_, c)| c).sum();
    let inner = latency.width.saturating_sub(2) as usize;
    let rows: Vec<Line> = latency_rows(&s.latency, inner, g.bar)
        .into_iter()
        .map(Line::raw)
        .collect();
    Paragraph::new(rows)
        .block(block(format!("handler latency ({total} calls)"), g))
        .render(latency, buf);

    render_faults(bottom, buf, s, g);
}

fn render_map(area: Rect, buf: &mut Buffer, s: &Snapshot, g: &Glyphs) {
    use ratatui::widgets::Widget;
    let pages: usize = s.regions.iter().map(|r| r.pages.len()).sum();
    let title = format!("page map of {} ({pages} pages)", s.target);
    let inner = area.inner(ratatui::layout::Margin::new(1, 1));
    let mut lines = Vec::new();
    if let Some(note) = &s.map_note {
        lines.push(Line::raw(note.clone()));
    }
    let grid = Grid::fit(
        &s.regions,
        inner.width,
        inner.height.saturating_sub(lines.len() as u16),
    );
    lines.extend(grid.lines(&s.regions, g));
    Paragraph::new(lines)
        .block(block(title, g))
        .render(area, buf);
}

fn render_faults(area: Rect, buf: &mut Buffer, s: &Snapshot, g: &Glyphs) {
    use ratatui::widgets::Widget;
    let mut title = format!("faults of {}, newest first", s.target);
    if s.dropped > 0 {
        title.push_str(&format!(
            " ({} records lost: the ring overwrote them first)",
            s.dropped
        ));
    }
    let lines: Vec<Line> = match &s.faults_note {
        Some(note) => vec![Line::raw(note.clone())],
        None => std::iter::once(Line::styled(
            FAULTS_HEADER,
            Style::new().add_modifier(Modifier::BOLD),
        ))
        .chain(s.faults.iter().map(|e| Line::raw(fault_row(e, s.start_ns))))
        .collect(),
    };
    Paragraph::new(lines)
        .wrap(ratatui::widgets::Wrap { trim: false })
        .block(block(title, g))
        .render(area, buf);
}

/// The size at which [`render`] shows all of `s` at `width` columns (for `--once`, which has
/// no terminal to fit): every page a cell unless that takes more than 48 rows, every
/// counter, every latency bucket, and the last 20 faults.
pub fn full_size(s: &Snapshot, width: u16) -> (u16, u16) {
    let map_inner = width.saturating_sub(SIDE + 2);
    let grid = Grid::fit(&s.regions, map_inner, 48);
    let map_rows =
        grid.lines(&s.regions, &Glyphs::ASCII).len() as u16 + u16::from(s.map_note.is_some()) + 2;
    let side_rows = s.counters.len() as u16 + 2 + s.latency.len().max(1) as u16 + 2;
    let top = map_rows.max(side_rows);
    // The fault panel's height follows the total (a third): grow the total until the top
    // still has its rows and the faults have theirs (20 at most, a header, the borders).
    let want_faults = (s.faults.len().min(20) as u16 + 3).min(16);
    let mut height = top + 6;
    while height < 400
        && (height - 1 - faults_height(height) < top || faults_height(height) < want_faults)
    {
        height += 1;
    }
    (width, height)
}

/// The text of a drawn buffer, a line a row, trailing blanks trimmed.
pub fn text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
