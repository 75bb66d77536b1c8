/* SPDX-License-Identifier: MIT */
/*
 * Snapshots that go wrong (the rest of the snapshot suite, whose table is
 * in test_snapshot.c): failed saves leave the VM running and the old
 * image intact; bad images are refused with exit status 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel/util/compiler.h"
#include "tests/harness/test_util.h"
#include "tests/kvm/run_util.h"
#include "tests/kvm/snapshot_util.h"

/* A save into a full file system fails; the VM runs on, the old image
 * is intact, no temporary file is left. */
void test_snapshot_full_fs(void)
{
	char mnt[100], img[128], out[8192], err[8192], con[160];
	struct vmp v;
	struct ticks t0, t1;
	int fd, rc;

	snap_setup_dir();
	snap_mkpath(mnt, sizeof(mnt), "full");
	mkdir(mnt, 0700);
	TEST_ASSERT(mount("tmpfs", mnt, "tmpfs", 0, "size=256k") == 0,
		    "mount tmpfs: %s", strerror(errno));
	snprintf(img, sizeof(img), "%s/img", mnt);
	fd = open(img, O_CREAT | O_WRONLY, 0600);
	TEST_ASSERT(fd >= 0 && write(fd, "OLD IMAGE", 9) == 9, "old image");
	close(fd);
	snap_mkpath(v.con, sizeof(v.con), "con.txt");
	snap_mkpath(v.sock, sizeof(v.sock), "s.sock");
	snprintf(con, sizeof(con), "file:%s", v.con);
	{
		const char *a[] = { "run",
				    "--ctl",
				    v.sock,
				    "--console",
				    con,
				    "--cmdline",
				    "work=dirty mib=32 rate=0 tick_ms=100",
				    NULL };

		snap_spawn(&v, a);
	}
	t0 = snap_wait_ticks(v.con, 2);
	rc = snap_ctl(v.sock, "save", img, "none", out, err);
	TEST_CHECK(rc == 1 && strstr(err, "No space"),
		   "save into a full tmpfs: exit %d: %s", rc, err);
	TEST_CHECK(!strcmp(snap_slurp(img), "OLD IMAGE"),
		   "the old image changed");
	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "test $(ls %s | wc -l) -eq 1", mnt);
		TEST_CHECK(system(cmd) == 0, "a temporary file was left in %s",
			   mnt);
	}
	rc = snap_ctl(v.sock, "status", NULL, NULL, out, err);
	TEST_CHECK(rc == 0 && strstr(out, "state running"), "status: %s", out);
	t1 = snap_wait_ticks(v.con, t0.count + 2);
	TEST_CHECK(t1.count >= t0.count + 2 && t1.clean,
		   "no progress after the failed save: %u then %u ticks",
		   t0.count, t1.count);
	snap_reap(&v, SIGTERM);
	umount(mnt);
	snap_cleanup_dir();
}

/* Truncated, corrupt and wrong-version images: exit 2, nothing runs. */
void test_snapshot_bad_images(void)
{
	static const char *const codecs[] = { "zstd" };
	char img[128], bad[128], con[160], conf[128], out[8192], err[8192];
	const char *a[] = { "restore",		 bad, "--console", con,
			    "--disk-changed-ok", NULL };
	const char *v[] = { "image", "verify", bad, NULL };
	struct stat st;
	uint8_t *data;
	size_t len, offs[8];
	unsigned int i, n = 0;
	int fd, rc;

	snap_setup_dir();
	snap_run_and_save("1", codecs, 1);
	snap_mkpath(img, sizeof(img), "img-zstd");
	snap_mkpath(bad, sizeof(bad), "bad");
	snap_mkpath(conf, sizeof(conf), "con-bad.txt");
	snprintf(con, sizeof(con), "file:%s", conf);
	TEST_ASSERT(stat(img, &st) == 0 && st.st_size > 4096, "image");
	len = (size_t)st.st_size;
	data = malloc(len);
	fd = open(img, O_RDONLY);
	TEST_ASSERT(data && fd >= 0 && read(fd, data, len) == (ssize_t)len,
		    "read image");
	close(fd);

	/* Truncations: inside the preamble, the header, mid-image, at END. */
	offs[n++] = 5;
	offs[n++] = 40;
	offs[n++] = len / 2;
	offs[n++] = len - 1;
	for (i = 0; i < n; i++) {
		snap_write_file(bad, data, offs[i]);
		unlink(conf);
		rc = run_vmrun(a, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2 && strstr(err, "restore"),
			   "truncated at %zu: exit %d: %s", offs[i], rc, err);
		TEST_CHECK(access(conf, F_OK) ||
				   !strstr(snap_slurp(conf), "GUEST"),
			   "truncated at %zu: the guest ran", offs[i]);
		rc = run_vmrun(v, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2, "verify truncated at %zu: exit %d", offs[i],
			   rc);
	}
	/* A flipped byte in the preamble, header, state, pages and END. */
	n = 0;
	offs[n++] = 2;
	offs[n++] = 50;
	offs[n++] = 300;
	offs[n++] = 2000;
	offs[n++] = len / 2;
	offs[n++] = len - 8;
	for (i = 0; i < n; i++) {
		data[offs[i]] ^= 0x40;
		snap_write_file(bad, data, len);
		data[offs[i]] ^= 0x40;
		unlink(conf);
		rc = run_vmrun(a, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2 && strstr(err, "restore"),
			   "byte %zu flipped: exit %d: %s", offs[i], rc, err);
		TEST_CHECK(access(conf, F_OK) ||
				   !strstr(snap_slurp(conf), "GUEST"),
			   "byte %zu flipped: the guest ran", offs[i]);
		rc = run_vmrun(v, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2, "verify, byte %zu flipped: exit %d",
			   offs[i], rc);
	}
	/* No image at all. */
	{
		const char *na[] = { "restore", "/nonexistent/vmrun.img",
				     "--console", con, NULL };

		rc = run_vmrun(na, out, err, sizeof(out), 120000);
		TEST_CHECK(rc == 2 && strstr(err, "No such file"),
			   "a missing image: exit %d: %s", rc, err);
	}
	/* An unknown format version (the preamble's second word). */
	data[8] = 99;
	snap_write_file(bad, data, len);
	rc = run_vmrun(a, out, err, sizeof(out), 120000);
	TEST_CHECK(rc == 2 && strstr(err, "version"), "version 99: exit %d: %s",
		   rc, err);
	/* The good image still verifies and restores. */
	rc = run_vmrun((const char *[]){ "image", "verify", img, NULL }, out,
		       err, sizeof(out), 120000);
	TEST_CHECK(rc == 0 && strstr(out, "ok"), "verify good: %d %s", rc, err);
	/* Taken apart: every state message decodes with protoc. */
	rc = run_vmrun((const char *[]){ "image", "dump", img, NULL }, out, err,
		       sizeof(out), 120000);
	TEST_CHECK(rc == 0 && strstr(out, "vmrun.VcpuState") &&
			   strstr(out, "vmrun.SerialState (serial)") &&
			   strstr(out, "vmrun.VirtioMmioState (virtio-blk)"),
		   "image dump: %d %s %s", rc, out, err);
	rc = run_vmrun((const char *[]){ "image", "dump", img, "--section",
					 "99", NULL },
		       out, err, sizeof(out), 120000);
	TEST_CHECK(rc == 2 && strstr(err, "no section 99"),
		   "dump of a section that is not there: %d %s", rc, err);
	{
		static const struct {
			const char *section, *inner, *msg, *proto, *want;
		} dec[] = {
			{ "2", NULL, "vmrun.VmState", "vm_state.proto",
			  "pic_master" },
			{ "3", "--inner", "vmrun.VcpuState", "vcpu_x86.proto",
			  "regs" },
			{ "4", "--inner", "vmrun.SerialState", "devices.proto",
			  "lcr" },
		};
		char cmd[1024], dout[160];
		unsigned int k;

		TEST_CHECK(
			access("/usr/bin/protoc", X_OK) == 0,
			"no protoc: tests/deps.sh installs protobuf-compiler");
		snap_mkpath(dout, sizeof(dout), "decoded.txt");
		for (k = 0; k < ARRAY_SIZE(dec); k++) {
			snprintf(
				cmd, sizeof(cmd),
				"%s image dump %s --section %s %s | protoc "
				"--proto_path=%s/proto --decode=%s %s/proto/%s "
				"> %s",
				VMRUN_BIN, img, dec[k].section,
				dec[k].inner ? dec[k].inner : "", SRC_DIR,
				dec[k].msg, SRC_DIR, dec[k].proto, dout);
			rc = system(cmd);
			TEST_CHECK(rc == 0 && strstr(snap_slurp(dout),
						     dec[k].want),
				   "%s: %d\n%s", cmd, rc, snap_slurp(dout));
		}
	}
	free(data);
	snap_cleanup_dir();
}
