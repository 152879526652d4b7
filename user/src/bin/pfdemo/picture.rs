//! The drawing of a mapping, one cell per page (or per 2 MiB frame), that the tour and
//! `pfdemo touch --map` print.

use pfdemo::sys::{Mapping, Pagemap};
use pfdemo::{io, Res};

/// One cell per page: `.` absent, `#` present, `*` just faulted in.
pub fn picture(pm: &mut Pagemap, map: &Mapping, just: Option<usize>) -> Res<String> {
    picture_every(pm, map, just, 1)
}

/// One cell per `every` pages (512: one per 2 MiB frame), by the first page of each.
pub fn picture_every(
    pm: &mut Pagemap,
    map: &Mapping,
    just: Option<usize>,
    every: usize,
) -> Res<String> {
    let mut s = String::from("[");
    for i in (0..map.pages()).step_by(every) {
        let present = io("pagemap", pm.entry(map.addr(i)))?.present;
        s.push(
            match (present, just.map(|j| j / every) == Some(i / every)) {
                (true, true) => '*',
                (true, false) => '#',
                (false, _) => '.',
            },
        );
    }
    s.push(']');
    Ok(s)
}
