//! The drawing of a mapping, one cell per page, that the tour and `pfdemo touch --map` print.

use pfdemo::sys::{Mapping, Pagemap};
use pfdemo::{io, Res};

/// One cell per page: `.` absent, `#` present, `*` just faulted in.
pub fn picture(pm: &mut Pagemap, map: &Mapping, just: Option<usize>) -> Res<String> {
    let mut s = String::from("[");
    for i in 0..map.pages() {
        let present = io("pagemap", pm.entry(map.addr(i)))?.present;
        s.push(match (present, Some(i) == just) {
            (true, true) => '*',
            (true, false) => '#',
            (false, _) => '.',
        });
    }
    s.push(']');
    Ok(s)
}
