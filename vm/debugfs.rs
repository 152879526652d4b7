// SPDX-License-Identifier: GPL-2.0

//! debugfs files whose open file pins the module.
//!
//! The kernel crate's debugfs files (7.3) have `file_operations` without an `.owner`. debugfs
//! then takes no reference on the module when one of them is opened, so `rmmod` succeeds
//! while a reader holds `stats` open, and that reader's `close()` calls `release` through the
//! freed module's table: an oops in `full_proxy_release`. Every table here names this module
//! as its owner, as C's `THIS_MODULE` does and as the kernel crate's miscdevice does: debugfs's
//! proxy `open` takes a reference on the module (`fops_get`) and `release` drops it, so an
//! open file makes `rmmod` fail (`EAGAIN`), exactly as an open device file does.
//!
//! Three kinds of file, each a trait the data implements:
//! - [`Show`]: a text file, formatted afresh for each open file at its first `read`
//!   (`single_open`, a `seq_file`).
//! - [`Store`]: a text file that also takes a write (`events/enable`).
//! - [`ReadAt`]: a binary file read at an offset (`events/cpu<k>`).
//!
//! The data of every file is a `'static` value, so it outlives the file whatever the order of
//! unload. The files live as long as the [`Dir`] they are under: dropping it removes the whole
//! tree, and `debugfs_remove` waits for the file operations in flight to return.
//!
//! Calling context: creating and removing files is process context that may sleep (load and
//! unload); the file operations run in the reader's process context.
//!
//! C header: [`include/linux/debugfs.h`](srctree/include/linux/debugfs.h).

// Without debugfs the C functions used here are inline stubs or absent, and the module would
// have nothing to show.
#[cfg(not(CONFIG_DEBUG_FS))]
compile_error!("rust_pagefault_demo needs CONFIG_DEBUG_FS");

use core::{
    marker::PhantomData,
    ptr::{
        self,
        null_mut, //
    },
};
use kernel::{
    bindings,
    fmt,
    fs::file::Offset,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceReader,
        UserSliceWriter, //
    }, //
};

/// This module's `struct module`, the owner of every table here.
const OWNER: *mut bindings::module = kernel::module::this_module::<crate::LocalModule>().as_ptr();

/// The data of a text file: what it shows, formatted for each open file at its first `read`
/// (again if the text outgrows the `seq_file`'s buffer, or after a seek back).
pub(crate) trait Show: Sync {
    /// Writes the file's text.
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// The data of a writable text file: what it does with the bytes written to it.
pub(crate) trait Store: Show {
    /// Takes one `write()`; an error is that call's result.
    fn store(&self, reader: &mut UserSliceReader) -> Result;
}

/// The data of a binary file: what it gives at an offset.
pub(crate) trait ReadAt: Sync {
    /// Writes what lies at `offset` into `writer`, moves `offset` on, and returns the count.
    fn read_at(&self, writer: &mut UserSliceWriter, offset: &mut Offset) -> Result<usize>;
}

/// A top-level debugfs directory and everything under it.
///
/// # Invariants
///
/// `dentry` is NULL, an error pointer, or a debugfs directory that this value owns. Every
/// file under it has a `'static` value as its data and a table from this file.
pub(crate) struct Dir {
    dentry: *mut bindings::dentry,
}

// SAFETY: A `Dir` is a dentry pointer; the debugfs calls made with it (creating files under
// it, removing it) may be made from any thread.
unsafe impl Send for Dir {}

// SAFETY: A shared `Dir` only creates files under its dentry, which debugfs serialises itself.
unsafe impl Sync for Dir {}

impl Dir {
    /// Creates the directory `name` at the top of debugfs.
    pub(crate) fn new(name: &'static CStr) -> Self {
        // SAFETY: `name` is a NUL-terminated string; a NULL parent means debugfs's root.
        let dentry = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), null_mut()) };
        // INVARIANT: `debugfs_create_dir` returns a new directory or an error pointer; the new
        // directory is ours to remove.
        Self { dentry }
    }

    /// The directory, as a place to create files and directories in.
    pub(crate) fn files(&self) -> Files<'_> {
        Files {
            dentry: self.dentry,
            _dir: PhantomData,
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `dentry` is NULL, an error pointer or our directory;
        // `debugfs_remove` takes all three. It removes the directory with everything under it
        // and waits for the file operations in flight; files still open afterwards get
        // `EIO` from debugfs and keep the module pinned through their table's owner.
        unsafe { bindings::debugfs_remove(self.dentry) }
    }
}

/// A directory of a [`Dir`]'s tree, borrowed from it: it is removed with the [`Dir`].
///
/// # Invariants
///
/// `dentry` is NULL, an error pointer, or a directory of the tree of a [`Dir`] that lives for
/// `'a`.
#[derive(Clone, Copy)]
pub(crate) struct Files<'a> {
    dentry: *mut bindings::dentry,
    _dir: PhantomData<&'a Dir>,
}

impl<'a> Files<'a> {
    /// Creates the directory `name` in this one.
    pub(crate) fn dir(self, name: &CStr) -> Files<'a> {
        // SAFETY: `name` is a NUL-terminated string; `debugfs_create_dir` takes an error or
        // NULL parent (it returns an error or creates at the root) and, by the type invariant,
        // the dentry is otherwise a live directory.
        let dentry = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), self.dentry) };
        // INVARIANT: The new directory is in the tree of the same `Dir`, removed with it.
        Files {
            dentry,
            _dir: PhantomData,
        }
    }

    /// Creates the read-only (0400) text file `name`, showing `data`.
    pub(crate) fn text<T: Show>(self, name: &CStr, data: &'static T) {
        // SAFETY: `TextOps::<T>::READ`'s functions read the private data as a `T`.
        unsafe { self.create(name, 0o400, data, &TextOps::<T>::READ) };
    }

    /// Creates the read-write (0600) text file `name`, showing `data` and storing into it.
    pub(crate) fn text_rw<T: Store>(self, name: &CStr, data: &'static T) {
        // SAFETY: `TextOps::<T>::READ_WRITE`'s functions read the private data as a `T`.
        unsafe { self.create(name, 0o600, data, &TextOps::<T>::READ_WRITE) };
    }

    /// Creates the read-only (0400) binary file `name`, read from `data` at an offset.
    pub(crate) fn binary<T: ReadAt>(self, name: &CStr, data: &'static T) {
        // SAFETY: `BinaryOps::<T>::READ`'s functions read the private data as a `T`.
        unsafe { self.create(name, 0o400, data, &BinaryOps::<T>::READ) };
    }

    /// Creates a file with `ops`, whose functions take the inode's private data for a `T`.
    ///
    /// # Safety
    ///
    /// `ops` must be a table of this file for `T`: its functions read the inode's or the
    /// file's private data as a `&T`.
    unsafe fn create<T>(
        self,
        name: &CStr,
        mode: u16,
        data: &'static T,
        ops: &'static bindings::file_operations,
    ) {
        // SAFETY: `name` is a NUL-terminated string, and the parent is NULL, an error pointer
        // or a live directory (type invariant), all of which debugfs takes. The private data
        // is a `T` that lives for ever, and `ops` reads it as a `&T` (the caller's promise). The file is removed with its `Dir`; debugfs reports a
        // failure to create it only to the caller, and a missing debugfs file is no error.
        unsafe {
            bindings::debugfs_create_file_full(
                name.as_char_ptr(),
                mode,
                self.dentry,
                ptr::from_ref(data).cast_mut().cast(),
                null_mut(),
                ops,
            )
        };
    }
}

/// The tables of text files showing a `T`.
struct TextOps<T>(PhantomData<T>);

impl<T: Show> TextOps<T> {
    const READ: bindings::file_operations = bindings::file_operations {
        owner: OWNER,
        open: Some(text_open::<T>),
        read: Some(bindings::seq_read),
        llseek: Some(bindings::seq_lseek),
        release: Some(bindings::single_release),
        ..pin_init::zeroed()
    };
}

impl<T: Store> TextOps<T> {
    const READ_WRITE: bindings::file_operations = bindings::file_operations {
        write: Some(text_write::<T>),
        ..Self::READ
    };
}

/// The table of binary files read from a `T`.
struct BinaryOps<T>(PhantomData<T>);

impl<T: ReadAt> BinaryOps<T> {
    const READ: bindings::file_operations = bindings::file_operations {
        owner: OWNER,
        open: Some(bindings::simple_open),
        read: Some(binary_read::<T>),
        llseek: Some(bindings::default_llseek),
        ..pin_init::zeroed()
    };
}

/// Formats a `T`'s text into a `seq_file`, for `single_open`.
fn show_into<T: Show>(seq: &SeqFile, data: &T) {
    struct Text<'a, T>(&'a T);
    impl<T: Show> fmt::Display for Text<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.show(f)
        }
    }
    seq_print!(seq, "{}", Text(data));
}

/// `open` of a text file: a `seq_file` that shows the inode's `T` once.
///
/// # Safety
///
/// `inode` is the inode of a file created by [`Files::text`] or [`Files::text_rw`] for a `T`,
/// and `file` is being opened on it.
unsafe extern "C" fn text_open<T: Show>(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: By the function's safety requirement, `inode` is live during `open`.
    let data = unsafe { (*inode).i_private };
    // SAFETY: `file` is being opened; `text_show::<T>` is called with the seq_file whose
    // private data is `data`, a `&'static T` (the inode's private data, see `Files::create`).
    unsafe { bindings::single_open(file, Some(text_show::<T>), data) }
}

/// `show` of a text file's `seq_file`.
///
/// # Safety
///
/// `seq` is a live `seq_file` opened by [`text_open::<T>`], so its private data is a
/// `&'static T`.
unsafe extern "C" fn text_show<T: Show>(seq: *mut bindings::seq_file, _: *mut c_void) -> c_int {
    // SAFETY: By the function's safety requirement, `seq` is live and its private data is a
    // `T` that lives for ever, only ever shared.
    let data = unsafe { &*(*seq).private.cast::<T>() };
    // SAFETY: `seq` is live for the duration of this call, which is all the borrow lasts, and
    // no other thread uses it meanwhile: `seq_read_iter` and `seq_lseek` call `show` with the
    // seq_file's mutex held.
    let seq = unsafe { SeqFile::from_raw(seq) };
    show_into(seq, data);
    0
}

/// `write` of a read-write text file.
///
/// # Safety
///
/// `file` was opened by [`text_open::<T>`] (its private data is the `seq_file`, whose private
/// data is a `&'static T`), and `buf` is a user address of `count` bytes.
unsafe extern "C" fn text_write<T: Store>(
    file: *mut bindings::file,
    buf: *const c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: By the function's safety requirement, `file` is open and its private data is
    // the `seq_file` of `single_open`, live until `release`.
    let seq = unsafe { (*file).private_data.cast::<bindings::seq_file>() };
    // SAFETY: That `seq_file`'s private data is a `T` that lives for ever, only ever shared.
    let data = unsafe { &*(*seq).private.cast::<T>() };
    let mut reader = UserSlice::new(UserPtr::from_ptr(buf.cast_mut().cast()), count).reader();
    match data.store(&mut reader) {
        // CAST: the VFS caps `count` at `MAX_RW_COUNT`, so it fits an `isize`.
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// `read` of a binary file.
///
/// # Safety
///
/// `file` was opened with `simple_open` on a file created by [`Files::binary`] for a `T`
/// (its private data is a `&'static T`), `buf` is a user address of `count` bytes, and
/// `ppos` is the file position the VFS lends this call.
unsafe extern "C" fn binary_read<T: ReadAt>(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: By the function's safety requirement, the file's private data is a `T` that
    // lives for ever, only ever shared.
    let data = unsafe { &*(*file).private_data.cast::<T>() };
    // SAFETY: `ppos` points to a position of this call's own: `read(2)` and `pread(2)` pass
    // a copy on their stack, written back to the file afterwards (`ksys_read`, `ksys_pread64`).
    let offset: &mut Offset = unsafe { &mut *ppos };
    let mut writer = UserSlice::new(UserPtr::from_ptr(buf.cast()), count).writer();
    match data.read_at(&mut writer, offset) {
        // CAST: a read returns at most `count` bytes, which the VFS caps at `MAX_RW_COUNT`,
        // so it fits an `isize`.
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}
