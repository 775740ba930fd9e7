#ifndef TIERGATE_CLINUX_H
#define TIERGATE_CLINUX_H
/// Linux interfaces Swift cannot reach through Glibc: calls without a glibc wrapper (openat2,
/// renameat2 need _GNU_SOURCE), variadic calls, and constants newer than the build machine's headers.
#include <stdint.h>
#include <sys/types.h>
#include <sys/xattr.h>

int CLinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
int CLinux_openat2_beneath(int dirfd, const char *path, int flags, unsigned int mode);

/// prctl(PR_SET_PDEATHSIG, SIGKILL): the calling process is killed when its parent dies (prctl is
/// variadic, so Swift cannot call it directly).
int CLinux_die_with_parent(void);
int CLinux_fcntl_int(int fd, int cmd, int arg);
int CLinux_punch_hole(int fd, int64_t offset, int64_t length);
int CLinux_syncfs(int fd);
/// malloc_trim(0): gives the free memory of every malloc arena back to the kernel (<malloc.h> is not part
/// of Swift's Glibc module).
int CLinux_malloc_trim(void);

#define CLINUX_RENAME_NOREPLACE 1
#define CLINUX_RENAME_EXCHANGE 2

/// open(2)'s O_TMPFILE (an unnamed file in a directory, linked in later with linkat), a GNU extension.
#define CLINUX_O_TMPFILE 020200000
/// open(2)'s O_PATH (a descriptor that only names an object), a GNU extension.
#define CLINUX_O_PATH 010000000
/// linkat(2)'s AT_EMPTY_PATH (link the file a descriptor refers to), a GNU extension.
#define CLINUX_AT_EMPTY_PATH 0x1000

/// fanotify: Debian 12's kernel headers predate the Linux 6.14 pre-content interface, so the constants
/// Tiergate needs are spelled out here with the values of the upstream uapi header. The calls are wrapped
/// because <sys/fanotify.h> is not part of Swift's Glibc module.
int CLinux_fanotify_init(unsigned int flags, unsigned int event_f_flags);
int CLinux_fanotify_mark(int fanotify_fd, unsigned int flags, uint64_t mask, int dirfd, const char *pathname);
/// open_by_handle_at(2) (_GNU_SOURCE) of the `struct file_handle` at `handle`, as a fanotify event's fid
/// record carries it.
int CLinux_open_by_handle(int mount_fd, const void *handle, int flags);
/// Opens `fd`'s own object again through its file handle (name_to_handle_at, then open_by_handle_at,
/// O_PATH): whether the file system gives handles and this process may open them (CAP_DAC_READ_SEARCH).
/// A new descriptor, or -1 with errno.
int CLinux_reopen_by_own_handle(int fd);
/// pipe2(O_CLOEXEC | O_NONBLOCK) and pthread_setname_np need _GNU_SOURCE, which Swift's Glibc lacks.
int CLinux_pipe_cloexec_nonblock(int fds[2]);
int CLinux_set_thread_name(const char *name);
/// The calling thread's id (gettid(2), a GNU extension).
int CLinux_gettid(void);
/// statfs(2) f_type of the filesystem holding `path` (EXT4_SUPER_MAGIC, TMPFS_MAGIC, …), or -1 with errno.
int64_t CLinux_filesystem_type(const char *path);
/// Whether system call `number` (as /proc/TID/syscall names it, -1 outside any call: a page fault),
/// with its second to fourth arguments, at most reads a file's content: read, pread, readv, preadv,
/// exec, a fault, or an mmap that is not both writable and shared. Anything else (write, truncate,
/// fallocate, copy and splice, io_uring, calls this list does not know) may change the content.
int CLinux_syscall_only_reads(long number, unsigned long arg2, unsigned long arg3, unsigned long arg4);

/// File leases (fcntl, _GNU_SOURCE): a write lease is granted only while no other descriptor has the
/// file open, and is broken (the opener waits) when one tries to.
#define CLINUX_F_SETLEASE 1024
#define CLINUX_F_GETLEASE 1025

/// lseek whences for sparse files (GNU extensions): the next data byte, the next hole.
#define CLINUX_SEEK_DATA 3
#define CLINUX_SEEK_HOLE 4

#define CLINUX_FAN_CLOEXEC 0x00000001u
#define CLINUX_FAN_NONBLOCK 0x00000002u
#define CLINUX_FAN_CLASS_PRE_CONTENT 0x00000008u
#define CLINUX_FAN_UNLIMITED_QUEUE 0x00000010u
#define CLINUX_FAN_UNLIMITED_MARKS 0x00000020u
#define CLINUX_FAN_REPORT_TID 0x00000100u
#define CLINUX_FAN_CLASS_NOTIF 0x00000000u
/// Events name the folder (its file handle) and the entry's name: FAN_REPORT_DFID_NAME (Linux 5.9).
#define CLINUX_FAN_REPORT_DFID_NAME 0x00000c00u

/// Notification events (fanotify(7)).
#define CLINUX_FAN_MODIFY 0x00000002ull
#define CLINUX_FAN_ATTRIB 0x00000004ull
#define CLINUX_FAN_CLOSE_WRITE 0x00000008ull
#define CLINUX_FAN_MOVED_FROM 0x00000040ull
#define CLINUX_FAN_MOVED_TO 0x00000080ull
#define CLINUX_FAN_CREATE 0x00000100ull
#define CLINUX_FAN_DELETE 0x00000200ull
#define CLINUX_FAN_Q_OVERFLOW 0x00004000ull
#define CLINUX_FAN_ONDIR 0x40000000ull
/// Info record type: the folder's fid, then the entry's name.
#define CLINUX_FAN_EVENT_INFO_TYPE_DFID_NAME 2

#define CLINUX_FAN_MARK_ADD 0x00000001u
#define CLINUX_FAN_MARK_REMOVE 0x00000002u
#define CLINUX_FAN_MARK_DONT_FOLLOW 0x00000004u
#define CLINUX_FAN_MARK_IGNORED_SURV_MODIFY 0x00000040u
#define CLINUX_FAN_MARK_FLUSH 0x00000080u
#define CLINUX_FAN_MARK_FILESYSTEM 0x00000100u
#define CLINUX_FAN_MARK_EVICTABLE 0x00000200u
#define CLINUX_FAN_MARK_IGNORE 0x00000400u

/// Linux 6.14: an access to a range of a file's content is about to happen (read, write, mmap,
/// truncate, fallocate); the listener may fill the range before answering.
#define CLINUX_FAN_PRE_ACCESS 0x00100000ull

/// Info record type carrying `struct fanotify_event_info_range` (6.14).
#define CLINUX_FAN_EVENT_INFO_TYPE_RANGE 6
#define CLINUX_FANOTIFY_METADATA_VERSION 3
#define CLINUX_FAN_NOFD (-1)

#define CLINUX_FAN_ALLOW 0x01u
#define CLINUX_FAN_DENY 0x02u
/// 6.14: a deny may carry an errno for the blocked call in its top byte (pre-content groups only).
#define CLINUX_FAN_ERRNO_SHIFT 24
#define CLINUX_FAN_ERRNO_MASK 0xffu

/// Layouts of the records read from a fanotify descriptor (uapi, stable ABI).
struct CLinux_fanotify_event_metadata {
    uint32_t event_len;
    uint8_t vers;
    uint8_t reserved;
    uint16_t metadata_len;
    uint64_t mask __attribute__((aligned(8)));
    int32_t fd;
    int32_t pid;
};

struct CLinux_fanotify_event_info_header {
    uint8_t info_type;
    uint8_t pad;
    uint16_t len;
};

struct CLinux_fanotify_event_info_range {
    struct CLinux_fanotify_event_info_header hdr;
    uint32_t pad;
    uint64_t offset;
    uint64_t count;
};

struct CLinux_fanotify_response {
    int32_t fd;
    uint32_t response;
};
#endif
