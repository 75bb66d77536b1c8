/* SPDX-License-Identifier: MIT */
/*
 * Snapshot save and restore of the reference guest through the vmrun
 * command line: save (every codec), kill, restore in a new process; the
 * guest's counter continues and its self-check (memory and disk) never
 * reports a mismatch. Failed saves and bad images are tested in
 * test_snapshot_bad.c, with the helpers of snapshot_util.c both use.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"
#include "tests/kvm/snapshot_util.h"

/* Writing all the time: every round of a live save finds pages again. */
#define CMDLINE_BUSY "work=dirty mib=16 rate=0 tick_ms=100"

/* A 2-vCPU guest saved in each codec and each image restored (@mode as
 * for snap_restore_check_mode()); returns the last tick before the save. */
static unsigned int save_restore_each(const char *mode)
{
	static const char *const codecs[] = { "lz4", "zstd", "none" };
	char disk[128], copy[128], img[128];
	unsigned int last, i;

	last = snap_run_and_save("2", codecs, 3);
	snap_mkpath(disk, sizeof(disk), "disk.img");
	for (i = 0; i < 3; i++) {
		snprintf(copy, sizeof(copy), "%s/disk-%u.img", snap_dir, i);
		snprintf(img, sizeof(img), "%s/img-%s", snap_dir, codecs[i]);
		snap_copy_disk(disk, copy);
		snap_restore_check_mode(img, copy, last, 2, i, mode);
	}
	return last;
}

static void test_snapshot_each_codec(void)
{
	snap_setup_dir();
	save_restore_each(NULL);
	snap_cleanup_dir();
}

/* One image, two independent VMs at once; four vCPUs each. */
static void test_snapshot_twice_4cpus(void)
{
	static const char *const codecs[] = { "lz4" };
	char disk[128], copy[2][128], img[128], con[2][160], out[8192],
		err[8192];
	struct vmp v[2];
	struct ticks t;
	unsigned int last, i;
	int rc;

	snap_setup_dir();
	last = snap_run_and_save("4", codecs, 1);
	snap_mkpath(disk, sizeof(disk), "disk.img");
	snap_mkpath(img, sizeof(img), "img-lz4");
	for (i = 0; i < 2; i++) {
		char name[32];

		snprintf(copy[i], sizeof(copy[i]), "%s/disk-%u.img", snap_dir,
			 i);
		snap_copy_disk(disk, copy[i]);
		snprintf(name, sizeof(name), "con-t%u.txt", i);
		snap_mkpath(v[i].con, sizeof(v[i].con), name);
		snprintf(name, sizeof(name), "t%u.sock", i);
		snap_mkpath(v[i].sock, sizeof(v[i].sock), name);
		snprintf(con[i], sizeof(con[i]), "file:%s", v[i].con);
		{
			const char *a[] = { "restore",	 img,	  "--disk",
					    copy[i],	 "--ctl", v[i].sock,
					    "--console", con[i],  NULL };

			snap_spawn(&v[i], a);
		}
	}
	for (i = 0; i < 2; i++) {
		rc = snap_ctl(v[i].sock, "status", NULL, NULL, out, err);
		TEST_ASSERT(rc == 0 && strstr(out, "vcpus 4\n"),
			    "restore %u: %d %s", i, rc, out);
	}
	for (i = 0; i < 2; i++) {
		t = snap_wait_verified(v[i].con, 4);
		TEST_ASSERT(t.count >= 4 && t.clean && t.ordered &&
				    t.vlast - t.vfirst >= WORK_PAGES &&
				    t.first == snap_next_tick(v[i].con, last),
			    "restore %u: %u ticks from %u (saved at %u)%s", i,
			    t.count, t.first, last,
			    t.clean ? "" : ", with mismatches");
	}
	for (i = 0; i < 2; i++)
		snap_reap(&v[i], SIGTERM);
	snap_cleanup_dir();
}

static int ctl_inc(const char *sock, const char *file, const char *codec,
		   char *out, char *err)
{
	const char *a[] = { "ctl",	  sock,	 "save",	  file,
			    "--compress", codec, "--incremental", NULL };

	return run_vmrun(a, out, err, 8192, 300000);
}

static int vmrun_rc(const char *const *a, char *out, char *err)
{
	return run_vmrun(a, out, err, 8192, 300000);
}

/*
 * A full image and two incremental ones saved while the guest runs (the
 * last one paused), with an incremental save between them that fails for
 * want of space and so must give its pages back to the next one; the
 * chain of three restores and the guest goes on with no mismatch. A
 * missing or replaced base is refused; a chain moved whole still reads.
 */
static void test_snapshot_chain(void)
{
	char disk[128], copy[128], a_img[128], b_img[128], c_img[128];
	char d_img[128];
	char mnt[128], full[160], con[160], out[8192], err[8192], cmd[1024];
	struct vmp v;
	struct ticks t;
	int rc;

	snap_setup_dir();
	snap_mkpath(disk, sizeof(disk), "disk.img");
	snap_mkpath(a_img, sizeof(a_img), "a.img");
	snap_mkpath(b_img, sizeof(b_img), "b.img");
	snap_mkpath(c_img, sizeof(c_img), "c.img");
	snap_mkpath(v.con, sizeof(v.con), "con0.txt");
	snap_mkpath(v.sock, sizeof(v.sock), "s0.sock");
	snap_make_disk(disk);
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = { "run",    "--cpus",	   "2",
				    "--disk", disk,	   "--rng",
				    "--ctl",  v.sock,	   "--console",
				    con,      "--cmdline", CMDLINE,
				    NULL };

		snap_spawn(&v, a);
	}
	t = snap_wait_ticks(v.con, 3);
	rc = ctl_inc(v.sock, b_img, "lz4", out, err);
	TEST_CHECK(rc == 1 && strstr(err, "full image"),
		   "an incremental save with no base: exit %d: %s", rc, err);
	rc = snap_ctl(v.sock, "save", a_img, "lz4", out, err);
	TEST_ASSERT(rc == 0, "full save: %d %s", rc, err);
	rc = ctl_inc(v.sock, a_img, "lz4", out, err);
	TEST_CHECK(rc == 1 && strstr(err, "base"),
		   "an incremental save over its own base: exit %d: %s", rc,
		   err);
	t = snap_wait_ticks(v.con, t.count + 2);

	/* A one-page tmpfs, already full: the save fails after collecting. */
	snap_mkpath(mnt, sizeof(mnt), "full");
	mkdir(mnt, 0700);
	TEST_ASSERT(mount("tmpfs", mnt, "tmpfs", 0, "size=4k") == 0,
		    "mount tmpfs: %s", strerror(errno));
	snprintf(full, sizeof(full), "%s/filler", mnt);
	{
		static char page[4096];
		int fd = open(full, O_CREAT | O_WRONLY, 0600);

		TEST_ASSERT(fd >= 0, "filler");
		TEST_CHECK(write(fd, page, sizeof(page)) > 0, "filler");
		close(fd);
	}
	snprintf(full, sizeof(full), "%s/x.img", mnt);
	rc = ctl_inc(v.sock, full, "lz4", out, err);
	TEST_CHECK(rc == 1 && strstr(err, "No space"),
		   "an incremental save into a full tmpfs: exit %d: %s", rc,
		   err);
	umount(mnt);
	t = snap_wait_ticks(v.con, t.count + 2);
	TEST_CHECK(t.clean, "the guest found a mismatch after a failed save");

	rc = ctl_inc(v.sock, b_img, "zstd", out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "incremental over") &&
			    strstr(out, "image 2 of"),
		    "incremental save: %d %s %s", rc, out, err);
	t = snap_wait_ticks(v.con, t.count + 2);
	t = snap_pause_scan(&v);
	rc = ctl_inc(v.sock, c_img, "none", out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "image 3 of"),
		    "second incremental save: %d %s %s", rc, out, err);
	snap_reap(&v, SIGKILL);
	snap_keep_tail(v.con);

	/* The incremental image holds only what was written since. */
	rc = vmrun_rc(
		(const char *[]){ "image", "info", b_img, "--json", NULL }, out,
		err);
	TEST_CHECK(rc == 0 && strstr(out, "\"links\":2"), "info b: %d %s %s",
		   rc, out, err);
	{
		const char *p = strstr(out, "\"pages\":");
		unsigned long pages = p ? strtoul(p + 8, NULL, 10) : 0;

		TEST_CHECK(pages > 0 && pages < 65536 / 2,
			   "the incremental image holds %lu pages", pages);
	}
	rc = vmrun_rc((const char *[]){ "image", "verify", c_img, NULL }, out,
		      err);
	TEST_CHECK(rc == 0 && strstr(out, "3 images"), "verify c: %d %s %s", rc,
		   out, err);

	snap_mkpath(copy, sizeof(copy), "disk-c.img");
	snap_copy_disk(disk, copy);
	snap_restore_check(c_img, copy, t.last, 2, 0);

	/* A restored VM saves incrementally over the image it came from. */
	snap_mkpath(copy, sizeof(copy), "disk-r.img");
	snap_copy_disk(disk, copy);
	snap_mkpath(d_img, sizeof(d_img), "d.img");
	snap_mkpath(v.con, sizeof(v.con), "con-rr.txt");
	snap_mkpath(v.sock, sizeof(v.sock), "rr.sock");
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = { "restore",	 c_img,	  "--disk",
				    copy,	 "--ctl", v.sock,
				    "--console", con,	  NULL };

		snap_spawn(&v, a);
	}
	t = snap_wait_ticks(v.con, 3);
	t = snap_pause_scan(&v);
	rc = ctl_inc(v.sock, d_img, "lz4", out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "image 4 of"),
		    "incremental save of a restored VM: %d %s %s", rc, out,
		    err);
	snap_reap(&v, SIGKILL);
	snap_keep_tail(v.con);
	snap_mkpath(disk, sizeof(disk), "disk-d.img");
	snap_copy_disk(copy, disk);
	snap_restore_check(d_img, disk, t.last, 2, 1);
	/* The same chain lazily: each page from the newest link holding it. */
	snap_mkpath(disk, sizeof(disk), "disk-dl.img");
	snap_copy_disk(copy, disk);
	snap_restore_check_mode(d_img, disk, t.last, 2, 2, "--lazy=demand");
	snap_mkpath(disk, sizeof(disk), "disk-dl2.img");
	snap_copy_disk(copy, disk);
	snap_restore_check_mode(d_img, disk, t.last, 2, 3, "--lazy");

	/* A missing base, then a base replaced by another image. */
	snprintf(cmd, sizeof(cmd), "mv %s %s.moved", a_img, a_img);
	TEST_ASSERT(system(cmd) == 0, "%s", cmd);
	{
		const char *a[] = { "restore", c_img, "--console",
				    "file:/dev/null", NULL };

		rc = vmrun_rc(a, out, err);
		TEST_CHECK(rc == 2 && strstr(err, "missing"),
			   "restore with a missing base: exit %d: %s", rc, err);
		rc = vmrun_rc(
			(const char *[]){ "image", "verify", c_img, NULL }, out,
			err);
		TEST_CHECK(rc == 2 && strstr(err, "missing"),
			   "verify with a missing base: exit %d: %s", rc, err);
		snprintf(cmd, sizeof(cmd), "cp %s %s", c_img, a_img);
		TEST_ASSERT(system(cmd) == 0, "%s", cmd);
		rc = vmrun_rc(a, out, err);
		TEST_CHECK(rc == 2 && strstr(err, "not its base"),
			   "restore with a replaced base: exit %d: %s", rc,
			   err);
	}
	/* The chain moved as a whole: the bases are found beside it. */
	snprintf(cmd, sizeof(cmd),
		 "mv %s.moved %s && mkdir %s/moved && mv %s %s %s %s/moved/",
		 a_img, a_img, snap_dir, a_img, b_img, c_img, snap_dir);
	TEST_ASSERT(system(cmd) == 0, "%s", cmd);
	snprintf(c_img, sizeof(c_img), "%s/moved/c.img", snap_dir);
	rc = vmrun_rc((const char *[]){ "image", "verify", c_img, NULL }, out,
		      err);
	TEST_CHECK(rc == 0 && strstr(out, "3 images"),
		   "verify the moved chain: %d %s %s", rc, out, err);
	snap_cleanup_dir();
}

/* The offset of a byte inside the data of the image's first page batch
 * of more than one page (a walk over the section frames). */
static size_t data_byte(const uint8_t *d, size_t len)
{
	size_t off = 16;

	while (off + 32 <= len) {
		uint32_t type = d[off] | d[off + 1] << 8;
		uint64_t n = 0;
		int i;

		for (i = 7; i >= 0; i--)
			n = n << 8 | d[off + 8 + i];
		if (type == 4 && n > 8192 && off + 32 + n <= len)
			return off + 32 + n - 100;
		off += 32 + n;
	}
	return 0;
}

/*
 * Lazy restore: each codec with the background fill; demand-only
 * loading, saved again from there (the save reads the rest first) and
 * that image restored; a corrupt batch, which passes the structure
 * checks, stops the lazily restored VM with an error when it is read.
 */
static void test_snapshot_lazy(void)
{
	char disk[128], copy[128], img[128], again[128], bad[128], con[160];
	char out[8192], err[8192];
	struct vmp v;
	struct ticks t;
	unsigned int last;
	struct stat st;
	uint8_t *data;
	size_t len, at;
	int fd, rc;

	snap_setup_dir();
	last = save_restore_each("--lazy");
	snap_mkpath(disk, sizeof(disk), "disk.img");

	/* Demand only, then a full save of the VM so restored. */
	snap_mkpath(copy, sizeof(copy), "disk-d.img");
	snap_copy_disk(disk, copy);
	snap_mkpath(img, sizeof(img), "img-zstd");
	snap_mkpath(again, sizeof(again), "again.img");
	snap_mkpath(v.con, sizeof(v.con), "con-d.txt");
	snap_mkpath(v.sock, sizeof(v.sock), "d.sock");
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = {
			"restore", img,	   "--disk",	    copy,
			"--ctl",   v.sock, "--lazy=demand", "--console",
			con,	   NULL
		};

		snap_spawn(&v, a);
	}
	t = snap_wait_verified(v.con, 3);
	TEST_CHECK(t.count >= 3 && t.clean && t.ordered &&
			   t.vlast - t.vfirst >= WORK_PAGES &&
			   t.first == snap_next_tick(v.con, last),
		   "demand-loaded: %u ticks from %u (saved at %u)%s", t.count,
		   t.first, last, t.clean ? "" : ", a mismatch");
	/* Only what the guest touched was read: status says so. */
	rc = snap_ctl(v.sock, "status", NULL, NULL, out, err);
	TEST_CHECK(rc == 0 && strstr(out, "mem loading lazily: "),
		   "status of a demand-loaded VM: %d %s", rc, out);
	t = snap_pause_scan(&v);
	rc = snap_ctl(v.sock, "save", again, "lz4", out, err);
	TEST_ASSERT(rc == 0 && strstr(out, "saved "),
		    "save of a demand-loaded VM: %d %s", rc, err);
	rc = snap_ctl(v.sock, "status", NULL, NULL, out, err);
	TEST_CHECK(rc == 0 && !strstr(out, "mem loading"),
		   "status once the save read it all: %d %s", rc, out);
	snap_reap(&v, SIGKILL);
	snap_keep_tail(v.con);
	snap_mkpath(disk, sizeof(disk), "disk-d2.img");
	snap_copy_disk(copy, disk);
	snap_restore_check(again, disk, t.last, 2, 7);

	/* Lazily from a pipe: refused before anything is built. */
	{
		char cmd[512], errf[160];

		snap_mkpath(errf, sizeof(errf), "pipe.err");
		snprintf(cmd, sizeof(cmd),
			 "cat %s/img-lz4 | %s restore /proc/self/fd/0 --lazy "
			 "--console none 2>%s",
			 snap_dir, VMRUN_BIN, errf);
		rc = system(cmd);
		TEST_CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2 &&
				   strstr(snap_slurp(errf), "regular file"),
			   "lazy restore from a pipe: %#x %s", rc,
			   snap_slurp(errf));
	}

	/* A flipped byte in a batch's data: found when the batch is read. */
	snap_mkpath(img, sizeof(img), "img-none");
	snap_mkpath(bad, sizeof(bad), "bad.img");
	TEST_ASSERT(stat(img, &st) == 0, "image");
	len = (size_t)st.st_size;
	data = malloc(len);
	fd = open(img, O_RDONLY);
	TEST_ASSERT(data && fd >= 0 && read(fd, data, len) == (ssize_t)len,
		    "read image");
	close(fd);
	at = data_byte(data, len);
	TEST_ASSERT(at > 0, "no page batch found in %s", img);
	data[at] ^= 0x40;
	snap_write_file(bad, data, len);
	free(data);
	snap_mkpath(disk, sizeof(disk), "disk.img");
	snap_mkpath(copy, sizeof(copy), "disk-bad.img");
	snap_copy_disk(disk, copy);
	{
		const char *a[] = { "restore",	      bad,
				    "--disk",	      copy,
				    "--lazy",	      "--console",
				    "file:/dev/null", NULL };

		rc = vmrun_rc(a, out, err);
		TEST_CHECK(rc == 1 && strstr(err, "lazy restore") &&
				   strstr(err, "checksum"),
			   "lazy restore of a corrupt batch: exit %d: %s", rc,
			   err);
		a[4] = "--disk-changed-ok";
		rc = vmrun_rc(a, out, err);
		TEST_CHECK(rc == 2 && strstr(err, "checksum"),
			   "restore of a corrupt batch: exit %d: %s", rc, err);
	}
	snap_cleanup_dir();
}

/*
 * Disk, network card and rng all busy: the guest is saved (paused) in
 * the middle of it, killed, and restored with a new network back end,
 * plainly and lazily; its counter goes on, a whole pass verifies, and
 * frames cross the restored card both ways with none broken.
 */
static void test_snapshot_net_busy(void)
{
	char disk[128], copy[128], img[128], con[160], spec[32];
	struct echo e = { .fd = -1 };
	const char *c;
	pthread_t et;
	struct vmp v;
	struct ticks t;
	unsigned int i;
	int sv[2], rc;

	snap_setup_dir();
	snap_mkpath(disk, sizeof(disk), "disk.img");
	snap_mkpath(img, sizeof(img), "img-net");
	snap_mkpath(v.con, sizeof(v.con), "con0.txt");
	snap_mkpath(v.sock, sizeof(v.sock), "s0.sock");
	snap_make_disk(disk);
	snprintf(con, sizeof(con), "file:%s", v.con);
	TEST_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0,
		    "socketpair: %s", strerror(errno));
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	e.fd = sv[0];
	TEST_ASSERT(pthread_create(&et, NULL, echo_thread, &e) == 0, "echo");
	snprintf(spec, sizeof(spec), "fd:%d", sv[1]);
	{
		const char *a[] = { "run",	 "--cpus",    "2",
				    "--disk",	 disk,	      "--rng",
				    "--net",	 spec,	      "--ctl",
				    v.sock,	 "--console", con,
				    "--cmdline", CMDLINE,     NULL };

		snap_spawn(&v, a);
	}
	close(sv[1]);
	/* Until frames have gone both ways (a deadline, not a window). */
	for (i = 0; i < 18000; i++) {
		unsigned long long echoed;

		c = snap_slurp(v.con);
		echoed = last_kv(c, "GUEST IO", "net_echo");
		if (echoed != ~0ULL && echoed >= 4 &&
		    last_kv(c, "GUEST IO", "blk_w") > 0)
			break;
		usleep(10000);
	}
	TEST_ASSERT(i < 18000, "no traffic before the save:\n%s",
		    snap_slurp(v.con));
	t = snap_pause_scan(&v);
	{
		char out[8192], err[8192];

		rc = snap_ctl(v.sock, "save", img, "lz4", out, err);
		TEST_ASSERT(rc == 0, "save: %d %s", rc, err);
	}
	snap_reap(&v, SIGKILL);
	snap_keep_tail(v.con);
	e.stop = 1;
	pthread_join(et, NULL);
	close(sv[0]);
	snap_mkpath(copy, sizeof(copy), "disk-1.img");
	snap_copy_disk(disk, copy);
	snap_restore_check_span(img, copy, t.last, 0, 2, 0, NULL, true);
	snap_mkpath(copy, sizeof(copy), "disk-2.img");
	snap_copy_disk(disk, copy);
	snap_restore_check_span(img, copy, t.last, 0, 2, 1, "--lazy", true);
	snap_cleanup_dir();
}

static unsigned int json_uint(const char *out, const char *key)
{
	const char *p = strstr(out, key);

	return p ? (unsigned int)strtoul(p + strlen(key), NULL, 10) : 0;
}

/*
 * Live saves of a busy guest, full then incremental over it, each with
 * rounds written while the vCPUs run (so pages are written again); the
 * chain restores, plainly and lazily, and the guest goes on from a point
 * inside the second save, verifying a whole pass with no mismatch. No
 * disk: the guest goes on writing it after the save, so it would differ
 * from what the image records.
 */
static void test_snapshot_live(void)
{
	char a_img[128], b_img[128], con[160], out[8192], err[8192];
	unsigned int lo, hi;
	struct vmp v;
	struct ticks t;
	int rc;

	snap_setup_dir();
	snap_mkpath(a_img, sizeof(a_img), "a.img");
	snap_mkpath(b_img, sizeof(b_img), "b.img");
	snap_mkpath(v.con, sizeof(v.con), "con0.txt");
	snap_mkpath(v.sock, sizeof(v.sock), "s0.sock");
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = { "run",	  "--cpus", "2",
				    "--rng",	  "--ctl",  v.sock,
				    "--console",  con,	    "--cmdline",
				    CMDLINE_BUSY, NULL };

		snap_spawn(&v, a);
	}
	t = snap_wait_ticks(v.con, 3);
	{
		const char *a[] = { "ctl",	     v.sock, "save",   a_img,
				    "--live-rounds", "4",    "--json", NULL };

		rc = vmrun_rc(a, out, err);
		TEST_ASSERT(rc == 0 && strstr(out, "\"live\":true") &&
				    json_uint(out, "\"rounds\":") >= 4,
			    "live save: %d %s %s", rc, out, err);
		TEST_CHECK(json_uint(out, "\"pages\":") > 65536,
			   "a live save with 4 rounds wrote no page twice: %s",
			   out);
	}
	/* Bad live options are refused before anything is saved. */
	{
		static const char *const bad[] = { "0", "9", "x", "" };
		unsigned int k;

		for (k = 0; k < ARRAY_SIZE(bad); k++) {
			const char *a[] = { "ctl", v.sock,	    "save",
					    b_img, "--live-rounds", bad[k],
					    NULL };

			rc = vmrun_rc(a, out, err);
			TEST_CHECK(rc == 2 && strstr(err, "--live-rounds") &&
					   access(b_img, F_OK) != 0,
				   "--live-rounds '%s': %d %s", bad[k], rc,
				   err);
		}
		rc = vmrun_rc((const char *[]){ "restore", a_img,
						"--lazy=eager", NULL },
			      out, err);
		TEST_CHECK(rc == 2 && strstr(err, "--lazy=eager"),
			   "--lazy=eager: %d %s", rc, err);
	}
	/* On a terminal the save draws a progress bar, then its line. */
	{
		char cmd[1024], tty[160], c_img[128];

		snap_mkpath(tty, sizeof(tty), "tty.txt");
		snap_mkpath(c_img, sizeof(c_img), "c.img");
		snprintf(cmd, sizeof(cmd),
			 "script -qec '%s ctl %s save %s --live' /dev/null "
			 "> %s 2>&1",
			 VMRUN_BIN, v.sock, c_img, tty);
		rc = system(cmd);
		TEST_CHECK(rc == 0 && strstr(snap_slurp(tty), "saving: [") &&
				   strstr(snap_slurp(tty), "100%") &&
				   strstr(snap_slurp(tty), "saved "),
			   "save on a terminal: %#x\n%s", rc, snap_slurp(tty));
	}
	t = snap_wait_ticks(v.con, t.count + 2);
	lo = snap_scan(v.con).last;
	{
		const char *a[] = { "ctl",
				    v.sock,
				    "save",
				    b_img,
				    "--live-rounds",
				    "3",
				    "--incremental",
				    "--compress",
				    "zstd",
				    "--json",
				    NULL };

		rc = vmrun_rc(a, out, err);
		TEST_ASSERT(rc == 0 && strstr(out, "\"live\":true") &&
				    strstr(out, "\"incremental\":true"),
			    "live incremental save: %d %s %s", rc, out, err);
	}
	hi = snap_scan(v.con).last + 1; /* a line may be on its way */
	snap_reap(&v, SIGKILL);
	rc = vmrun_rc(
		(const char *[]){ "image", "info", b_img, "--json", NULL }, out,
		err);
	TEST_CHECK(rc == 0 && strstr(out, "\"live\":true") &&
			   strstr(out, "\"links\":2"),
		   "info: %d %s %s", rc, out, err);
	snap_restore_check_span(b_img, NULL, lo, hi, 2, 0, NULL, false);
	snap_restore_check_span(b_img, NULL, lo, hi, 2, 1, "--lazy", false);
	snap_restore_check_span(a_img, NULL, 0, lo, 2, 2, "--lazy=demand",
				false);
	snap_cleanup_dir();
}

const struct test_case snapshot_tests[] = {
	{ "each_codec", test_snapshot_each_codec },
	{ "twice_4cpus", test_snapshot_twice_4cpus },
	{ "full_fs", test_snapshot_full_fs },
	{ "bad_images", test_snapshot_bad_images },
	{ "chain", test_snapshot_chain },
	{ "lazy", test_snapshot_lazy },
	{ "live", test_snapshot_live },
	{ "net_busy", test_snapshot_net_busy },
	{ NULL, NULL },
};
