/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_SNAPSHOT_UTIL_H
#define VMM_TESTS_SNAPSHOT_UTIL_H

/*
 * What the snapshot tests (test_snapshot.c and test_snapshot_bad.c)
 * share: the reference guest run, saved and restored through the vmrun
 * command line, and its console read. Each is described where it is
 * defined, in snapshot_util.c.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CMDLINE "work=dirty mib=16 rate=20 tick_ms=100"

struct vmp {
	pid_t pid;
	char con[128];
	char sock[128];
};

/*
 * Ticks on the console: their count, the first and last tick number,
 * and whether every line is clean (no mismatch, no failure line).
 */
struct ticks {
	unsigned int count, first, last;
	unsigned long vfirst, vlast; /* verified= at the first and last */
	bool clean, ordered;
	bool partial; /* the console ends mid-line */
};

/* The pages of CMDLINE's workload (mib=16): one verification pass. */
#define WORK_PAGES 4096ul

/* The test's directory (snap_setup_dir()). */
extern char snap_dir[64];

unsigned int snap_next_tick(const char *con, unsigned int last);
void snap_mkpath(char *out, size_t len, const char *name);
void snap_setup_dir(void);
void snap_cleanup_dir(void);
void snap_spawn(struct vmp *v, const char *const *argv);
int snap_reap(struct vmp *v, int sig);
char *snap_slurp(const char *path);
struct ticks snap_scan(const char *path);
struct ticks snap_wait_verified(const char *path, unsigned int least);
struct ticks snap_wait_ticks(const char *path, unsigned int least);
int snap_ctl(const char *sock, const char *op, const char *file,
	     const char *codec, char *out, char *err);
struct ticks snap_pause_scan(const struct vmp *v);
void snap_keep_tail(const char *con);
void snap_copy_disk(const char *from, const char *to);
void snap_make_disk(const char *path);
unsigned int snap_run_and_save(const char *cpus, const char *const *codecs,
			       unsigned int n);
void snap_restore_check_span(const char *img, const char *disk,
			     unsigned int last, unsigned int hi,
			     unsigned int want_cpus, unsigned int k,
			     const char *mode, bool net);
void snap_restore_check_mode(const char *img, const char *disk,
			     unsigned int last, unsigned int want_cpus,
			     unsigned int k, const char *mode);
void snap_restore_check(const char *img, const char *disk, unsigned int last,
			unsigned int want_cpus, unsigned int k);
void snap_write_file(const char *path, const void *data, size_t len);

/* The tests in test_snapshot_bad.c, listed in snapshot_tests[]. */
void test_snapshot_full_fs(void);
void test_snapshot_bad_images(void);

#endif /* VMM_TESTS_SNAPSHOT_UTIL_H */
