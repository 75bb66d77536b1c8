/* SPDX-License-Identifier: MIT */
/*
 * Disk, network and rng traffic, in the formats of the reference guest's
 * drivers (tests/guest/ref/vdev.c), but through Linux's own virtio
 * drivers: one thread per device, one round per 10 ms jiffy (rounds
 * missed while a request was slow are skipped, not replayed).
 *
 * blk: /dev/vda (or env LINUX_INIT_DISK when not PID 1), O_DIRECT when it
 *   is a block device, so every round reaches the device. The first
 *   BLK_SECTORS sectors are the test area. A round writes BLK_BATCH
 *   sectors with a new generation and reads them back, then re-reads an
 *   older batch (half the area behind). Sector k holds "VMRUNBLK", k, its
 *   generation, a checksum of bytes 32-511, then a pattern from (k, gen).
 *   Only sectors written since boot are checked. A read-only disk is only
 *   read.
 * net: the first Ethernet interface other than lo (env LINUX_INIT_NET when
 *   not PID 1), an AF_PACKET socket for ethertype 0x88b5: a round
 *   broadcasts one 60-byte frame ("VMRUNNET", sequence, ~sequence) and
 *   counts the frames of that ethertype that arrived; one of that form is
 *   an echo, one with a broken sequence a mismatch.
 * rng: /dev/hwrng when virtio_rng is the current hwrng (env
 *   LINUX_INIT_RNG when not PID 1), 64 bytes per round, non-blocking.
 *
 * A request that takes longer than IO_TIMEOUT, and that the main
 * thread's io_watchdog() has seen outstanding in IO_TIMEOUT_CHECKS of
 * its checks, is reported once as "<dev> timeout", and the device is
 * left alone from then on (its thread stops when the request returns, if
 * it ever does); the other devices go on. Counting checks, not only
 * time, keeps a guest that did not run (a host too busy to run it, a
 * migration's switch) from blaming its devices: its clock went on while
 * neither the device's thread nor the watchdog ran.
 */
#define _GNU_SOURCE
#include "init.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECTOR 512
#define BLK_SECTORS 2048
#define BLK_BATCH 8
#define NET_FRAME 60
#define NET_ETHERTYPE 0x88b5
#define NET_BUF 2048
#define RNG_BUF 64
#define IO_TIMEOUT (5 * HZ)
#define IO_TIMEOUT_CHECKS 20
#define NET_FAILS_MAX (5 * HZ) /* failed sends in a row: a timeout */

/*
 * One device and its thread. [I] set before the thread starts; [a]
 * atomic, shared by the device thread and the main thread's watchdog.
 */
struct iodev {
	const char *name;     /* [I] "blk", "net", "rng" */
	void (*step)(void);   /* [I] one round */
	bool on;	      /* [a] cleared by the watchdog: leave it alone */
	uint64_t busy;	      /* [a] jiffy + 1 a request started at, or 0 */
	bool started;	      /* [I] its thread runs */
	uint64_t wd_busy;     /* the watchdog's: the request it is timing */
	unsigned int wd_seen; /* and in how many of its checks */
	bool stopped;	      /* [a] its thread has left its loop */
};

static void blk_step(void);
static void net_step(void);
static void rng_step(void);

static struct iodev devs[] = {
	{ .name = "blk", .step = blk_step },
	{ .name = "net", .step = net_step },
	{ .name = "rng", .step = rng_step },
};

enum { DEV_BLK, DEV_NET, DEV_RNG, DEV_COUNT };

/* Blk state: the blk thread's own after io_probe(). */
static struct {
	int fd;
	bool ro;
	uint64_t base, cap;
	bool announced;
	uint64_t nsect, wnext, vnext;
	uint32_t gen[BLK_SECTORS];
	uint8_t *wbuf, *rbuf; /* BLK_BATCH sectors, page-aligned */
	uint8_t want[SECTOR];
} blk = { .fd = -1 };

/* Net state: the net thread's own after io_probe(). */
static struct {
	int fd, ifindex;
	uint8_t mac[6];
	uint64_t seq;
	unsigned int fails;
} net = { .fd = -1 };

static struct {
	int fd;
} rng = { .fd = -1 };

/* Written by the device threads (atomic stores), read by the reports. */
static struct io_totals tot;
static bool found;    /* [I] any device came up */
static bool stopping; /* [a] io_stop(): no more rounds */

static void add(uint64_t *ctr, uint64_t n)
{
	__atomic_store_n(ctr, *ctr + n, __ATOMIC_RELAXED);
}

/* Brackets a request that might hang, for io_watchdog(). */
static void io_begin(struct iodev *d)
{
	__atomic_store_n(&d->busy, jiffies_now() + 1, __ATOMIC_RELEASE);
}

/* Returns false if the watchdog gave up on the device meanwhile. */
static bool io_end(struct iodev *d)
{
	__atomic_store_n(&d->busy, 0, __ATOMIC_RELEASE);
	return __atomic_load_n(&d->on, __ATOMIC_ACQUIRE);
}

/*
 * The address of the MMIO window (or first BAR) behind the sysfs device
 * link @link, e.g. /sys/block/vda/device -> .../LNRO0005:00/virtio0: the
 * start of the /proc/iomem range named after the virtio device's parent.
 * Returns 0 if there is none (a host test, or no permission to see).
 */
static uint64_t dev_base(const char *link)
{
	char path[PATH_MAX], line[256];
	unsigned long long start, end;
	const char *parent;
	uint64_t base = 0;
	int name_off;
	FILE *f;

	if (!realpath(link, path))
		return 0;
	parent = basename(dirname(path));
	f = fopen("/proc/iomem", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (sscanf(line, " %llx-%llx : %n", &start, &end, &name_off) >=
			    2 &&
		    !strcmp(line + name_off, parent)) {
			base = start;
			break;
		}
	}
	fclose(f);
	return base;
}

/* Sector @k at generation @gen, into @p. */
static void blk_make(uint8_t *p, uint64_t k, uint64_t gen)
{
	uint64_t *q = (uint64_t *)p, seed = mix64(k << 32 | gen), sum = 0;
	unsigned int i;

	memcpy(p, "VMRUNBLK", 8);
	q[1] = k;
	q[2] = gen;
	for (i = 4; i < SECTOR / 8; i++) {
		q[i] = seed + i * 0x9e3779b97f4a7c15ULL;
		sum = (sum << 1 | sum >> 63) ^ q[i];
	}
	q[3] = sum;
}

/* Rotate-and-xor checksum of the 64 quadwords of a sector. */
static uint64_t blk_sum(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	uint64_t sum = 0;
	unsigned int i;

	for (i = 0; i < SECTOR / 8; i++)
		sum = (sum << 1 | sum >> 63) ^ q[i];
	return sum;
}

/*
 * Reads or writes @n sectors at @sector. A failed or short transfer is a
 * bad sector ("blk status code=<errno>", EIO for a short one).
 */
static bool blk_rw(bool write, uint64_t sector, uint8_t *buf, unsigned int n)
{
	struct iodev *d = &devs[DEV_BLK];
	size_t len = (size_t)n * SECTOR;
	off_t off = (off_t)(sector * SECTOR);
	ssize_t r;
	int err;

	io_begin(d);
	r = write ? pwrite(blk.fd, buf, len, off) :
		    pread(blk.fd, buf, len, off);
	err = r < 0 ? errno : EIO;
	if (!io_end(d))
		return false;
	if (r != (ssize_t)len) {
		add(&tot.blk_bad, 1);
		guest_fail("blk status code=%d sector=%llu", err,
			   (unsigned long long)sector);
		return false;
	}
	add(write ? &tot.blk_w : &tot.blk_r, n);
	return true;
}

/* Checks sectors [k, k + n) in rbuf against the generations written. */
static void blk_check(uint64_t k, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		const uint8_t *got = blk.rbuf + i * SECTOR;
		uint64_t got_gen;

		if (!blk.gen[k + i])
			continue;
		blk_make(blk.want, k + i, blk.gen[k + i]);
		if (!memcmp(got, blk.want, SECTOR))
			continue;
		add(&tot.blk_bad, 1);
		memcpy(&got_gen, got + 16, 8);
		guest_fail("blk sector=%llu want_gen=%u got_gen=%llu",
			   (unsigned long long)(k + i), blk.gen[k + i],
			   (unsigned long long)got_gen);
	}
}

/*
 * The GUEST DEV line, from the blk thread's first round: its read may
 * hang on a broken device, and only there does the watchdog cover it.
 * Host to guest: a sector the host wrote just past the test area,
 * starting "VMRUNHST", is read once and its checksum reported, so a test
 * can tell the guest sees what the host put in the image.
 */
static void blk_announce(void)
{
	char extra[32] = "";

	blk.announced = true;
	if (blk.cap > BLK_SECTORS && blk_rw(false, BLK_SECTORS, blk.rbuf, 1) &&
	    !memcmp(blk.rbuf, "VMRUNHST", 8))
		snprintf(extra, sizeof(extra), " host=0x%llx",
			 (unsigned long long)blk_sum(blk.rbuf));
	out_line("GUEST DEV blk ok base=0x%llx sectors=%llu%s%s",
		 (unsigned long long)blk.base, (unsigned long long)blk.cap,
		 blk.ro ? " ro" : "", extra);
}

static void blk_step(void)
{
	uint64_t k;
	unsigned int n, i;

	if (!blk.announced) {
		blk_announce();
		if (!__atomic_load_n(&devs[DEV_BLK].on, __ATOMIC_ACQUIRE))
			return;
	}
	if (!blk.ro) {
		k = blk.wnext;
		n = (unsigned int)MIN((uint64_t)BLK_BATCH, blk.nsect - k);
		for (i = 0; i < n; i++)
			blk_make(blk.wbuf + i * SECTOR, k + i,
				 blk.gen[k + i] + 1);
		if (!blk_rw(true, k, blk.wbuf, n))
			return;
		for (i = 0; i < n; i++)
			blk.gen[k + i]++;
		if (!blk_rw(false, k, blk.rbuf, n))
			return;
		blk_check(k, n);
		blk.wnext = k + n == blk.nsect ? 0 : k + n;
	}
	k = blk.vnext;
	n = (unsigned int)MIN((uint64_t)BLK_BATCH, blk.nsect - k);
	if (!blk_rw(false, k, blk.rbuf, n))
		return;
	blk_check(k, n);
	blk.vnext = k + n == blk.nsect ? 0 : k + n;
}

/*
 * Opens the disk at @path (sysfs device link @link for base=) and returns
 * true if it can take traffic; its thread prints the GUEST DEV line.
 */
static bool blk_init(const char *path, const char *link)
{
	uint64_t base = link ? dev_base(link) : 0, cap = 0;
	int flags = O_CLOEXEC, ro = 0;
	struct stat st;

	if (stat(path, &st))
		return false;
	if (S_ISBLK(st.st_mode))
		flags |= O_DIRECT; /* past the page cache, to the device */
	blk.fd = open(path, O_RDWR | flags);
	if (blk.fd < 0 && (errno == EROFS || errno == EACCES || errno == EPERM))
		blk.fd = open(path, O_RDONLY | flags), ro = 1;
	if (blk.fd < 0) {
		out_line("GUEST DEV blk skip base=0x%llx why=open-failed",
			 (unsigned long long)base);
		return false;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(blk.fd, BLKGETSIZE64, &cap))
			cap = 0;
		if (!ro && ioctl(blk.fd, BLKROGET, &ro))
			ro = 0;
	} else {
		cap = (uint64_t)st.st_size;
	}
	cap /= SECTOR;
	blk.wbuf = aligned_alloc(PAGE_SIZE_4K, BLK_BATCH * SECTOR);
	blk.rbuf = aligned_alloc(PAGE_SIZE_4K, BLK_BATCH * SECTOR);
	if (!cap || !blk.wbuf || !blk.rbuf) {
		out_line("GUEST DEV blk skip base=0x%llx why=%s",
			 (unsigned long long)base,
			 cap ? "no-memory" : "empty-disk");
		close(blk.fd);
		return false;
	}
	blk.ro = ro;
	blk.base = base;
	blk.cap = cap;
	blk.nsect = MIN(cap, (uint64_t)BLK_SECTORS);
	/* The verify rounds trail the write rounds by half the area. */
	blk.vnext = blk.nsect / 2 / BLK_BATCH * BLK_BATCH;
	__atomic_store_n(&devs[DEV_BLK].on, true, __ATOMIC_RELEASE);
	return true;
}

static void net_step(void)
{
	struct iodev *d = &devs[DEV_NET];
	uint8_t f[NET_BUF];
	struct sockaddr_ll to = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(NET_ETHERTYPE),
		.sll_ifindex = net.ifindex,
		.sll_halen = 6,
		.sll_addr = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
	};
	uint64_t seq, inv;
	ssize_t len;

	for (;;) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);

		len = recvfrom(net.fd, f, sizeof(f), MSG_DONTWAIT,
			       (struct sockaddr *)&from, &fl);
		if (len < 0)
			break;
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		add(&tot.net_rx, 1);
		if (len < 38 || f[12] != (NET_ETHERTYPE >> 8) ||
		    f[13] != (NET_ETHERTYPE & 0xff) ||
		    memcmp(f + 14, "VMRUNNET", 8))
			continue;
		memcpy(&seq, f + 22, 8);
		memcpy(&inv, f + 30, 8);
		if (seq == ~inv) {
			add(&tot.net_echo, 1);
		} else {
			add(&tot.net_bad, 1);
			guest_fail("net bad-echo");
		}
	}

	/* The frame, as the reference guest builds it. */
	seq = net.seq;
	inv = ~seq;
	memset(f, 0, NET_FRAME);
	memset(f, 0xff, 6);
	memcpy(f + 6, net.mac, 6);
	f[12] = NET_ETHERTYPE >> 8;
	f[13] = NET_ETHERTYPE & 0xff;
	memcpy(f + 14, "VMRUNNET", 8);
	memcpy(f + 22, &seq, 8);
	memcpy(f + 30, &inv, 8);
	io_begin(d);
	len = sendto(net.fd, f, NET_FRAME, MSG_DONTWAIT,
		     (const struct sockaddr *)&to, sizeof(to));
	if (!io_end(d))
		return;
	if (len == NET_FRAME) {
		net.seq++;
		net.fails = 0;
		add(&tot.net_tx, 1);
		return;
	}
	/*
	 * A full queue (EAGAIN, ENOBUFS) is not an error once; a device
	 * that takes nothing for IO_TIMEOUT has stopped.
	 */
	if (++net.fails == NET_FAILS_MAX) {
		__atomic_store_n(&d->on, false, __ATOMIC_RELEASE);
		guest_fail("net timeout");
	}
}

/* The first Ethernet interface but lo, by ifindex, into @name. */
static bool net_pick(char *name, size_t size)
{
	struct if_nameindex *ifs = if_nameindex(), *i;
	unsigned int best = 0;
	char path[PATH_MAX];

	if (!ifs)
		return false;
	for (i = ifs; i->if_index; i++) {
		FILE *f;
		int type = 0;

		if (best && i->if_index > best)
			continue;
		snprintf(path, sizeof(path), "/sys/class/net/%s/type",
			 i->if_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fscanf(f, "%d", &type) != 1)
			type = 0;
		fclose(f);
		if (type != 1 || !strcmp(i->if_name, "lo"))
			continue; /* ARPHRD_ETHER only */
		best = i->if_index;
		snprintf(name, size, "%s", i->if_name);
	}
	if_freenameindex(ifs);
	return best != 0;
}

/* Writes @val to the file @path, best effort. */
static void write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, val, strlen(val)) < 0) {
		/* Best effort: an interface without IPv6 is fine. */
	}
	close(fd);
}

/*
 * Sets up interface @ifname: in the guest IPv6 off first (so the kernel
 * sends no solicitations of its own), then up; the packet socket and the
 * MAC address. Prints the GUEST DEV line; returns true on success.
 */
static bool net_init(const char *ifname)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET,
				   .sll_protocol = htons(NET_ETHERTYPE) };
	char path[PATH_MAX];
	struct ifreq ifr;
	uint64_t base, mac = 0;
	const char *why;
	int i;

	snprintf(path, sizeof(path), "/sys/class/net/%s/device", ifname);
	base = dev_base(path);
	if (strlen(ifname) >= IFNAMSIZ) {
		why = "bad-name";
		goto err;
	}
	if (pid1) {
		write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
		write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
		snprintf(path, sizeof(path),
			 "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
		write_file(path, "1");
	}
	net.fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC,
			htons(NET_ETHERTYPE));
	if (net.fd < 0) {
		why = "no-socket";
		goto err;
	}
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, ifname);
	if (ioctl(net.fd, SIOCGIFINDEX, &ifr)) {
		why = "no-interface";
		goto err_close;
	}
	net.ifindex = ifr.ifr_ifindex;
	if (ioctl(net.fd, SIOCGIFFLAGS, &ifr)) {
		why = "no-flags";
		goto err_close;
	}
	if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(net.fd, SIOCSIFFLAGS, &ifr)) {
			why = "cannot-up";
			goto err_close;
		}
	}
	if (ioctl(net.fd, SIOCGIFHWADDR, &ifr)) {
		why = "no-mac";
		goto err_close;
	}
	memcpy(net.mac, ifr.ifr_hwaddr.sa_data, 6);
	sll.sll_ifindex = net.ifindex;
	if (bind(net.fd, (struct sockaddr *)&sll, sizeof(sll))) {
		why = "cannot-bind";
		goto err_close;
	}
	for (i = 0; i < 6; i++)
		mac = mac << 8 | net.mac[i];
	__atomic_store_n(&devs[DEV_NET].on, true, __ATOMIC_RELEASE);
	out_line("GUEST DEV net ok base=0x%llx mac=0x%llx",
		 (unsigned long long)base, (unsigned long long)mac);
	return true;

err_close:
	close(net.fd);
err:
	out_line("GUEST DEV net skip base=0x%llx why=%s",
		 (unsigned long long)base, why);
	return false;
}

static void rng_step(void)
{
	struct iodev *d = &devs[DEV_RNG];
	uint8_t buf[RNG_BUF];
	ssize_t r;

	/* Non-blocking: no data yet just means none this round. */
	io_begin(d);
	r = read(rng.fd, buf, sizeof(buf));
	if (!io_end(d))
		return;
	if (r > 0)
		add(&tot.rng, (uint64_t)r);
}

/* The sysfs virtio device of type @id (1 net, 2 blk, 4 rng), into @out. */
static bool virtio_find(unsigned int id, char *out, size_t size)
{
	DIR *dir = opendir("/sys/bus/virtio/devices");
	struct dirent *e;
	bool ok = false;

	if (!dir)
		return false;
	while (!ok && (e = readdir(dir))) {
		char path[PATH_MAX];
		unsigned int dev = 0;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path),
			 "/sys/bus/virtio/devices/%s/device", e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		ok = fscanf(f, "%x", &dev) == 1 && dev == id;
		fclose(f);
		if (ok)
			snprintf(out, size, "/sys/bus/virtio/devices/%s",
				 e->d_name);
	}
	closedir(dir);
	return ok;
}

/* Opens the rng; in the guest only if virtio_rng is the current hwrng. */
static bool rng_init(const char *path)
{
	char cur[64] = "", link[PATH_MAX] = "";
	uint64_t base = 0;
	FILE *f;

	if (pid1) {
		f = fopen("/sys/class/misc/hw_random/rng_current", "re");
		if (!f)
			return false;
		if (!fgets(cur, sizeof(cur), f))
			cur[0] = 0;
		fclose(f);
		if (strncmp(cur, "virtio_rng", 10))
			return false;
		if (virtio_find(4, link, sizeof(link)))
			base = dev_base(link);
	}
	rng.fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rng.fd < 0) {
		out_line("GUEST DEV rng skip base=0x%llx why=open-failed",
			 (unsigned long long)base);
		return false;
	}
	__atomic_store_n(&devs[DEV_RNG].on, true, __ATOMIC_RELEASE);
	out_line("GUEST DEV rng ok base=0x%llx", (unsigned long long)base);
	return true;
}

/*
 * Finds and opens the devices and prints their GUEST DEV lines. In the
 * guest: /dev/vda, the first Ethernet interface, /dev/hwrng; as a host
 * test only what LINUX_INIT_DISK, LINUX_INIT_NET and LINUX_INIT_RNG name.
 */
void io_probe(void)
{
	const char *disk = pid1 ? "/dev/vda" : getenv("LINUX_INIT_DISK");
	const char *nic = pid1 ? NULL : getenv("LINUX_INIT_NET");
	const char *rngp = pid1 ? "/dev/hwrng" : getenv("LINUX_INIT_RNG");
	char ifname[IFNAMSIZ];

	if (disk && *disk)
		found |= blk_init(disk, pid1 ? "/sys/block/vda/device" : NULL);
	if (pid1 && net_pick(ifname, sizeof(ifname)))
		nic = ifname;
	if (nic && *nic)
		found |= net_init(nic);
	if (rngp && *rngp)
		found |= rng_init(rngp);
}

bool io_any(void)
{
	return found;
}

/* A device's thread: one round per jiffy until the watchdog says stop. */
static void *io_thread(void *arg)
{
	struct iodev *d = arg;

	while (__atomic_load_n(&d->on, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
		d->step();
		sleep_until_jiffy(jiffies_now() + 1);
	}
	__atomic_store_n(&d->stopped, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Starts a thread for every device that came up. Returns 0 or -1. */
int io_start(void)
{
	pthread_attr_t attr;
	pthread_t t;
	unsigned int i;
	int rc = 0;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (i = 0; i < DEV_COUNT; i++) {
		if (!__atomic_load_n(&devs[i].on, __ATOMIC_ACQUIRE))
			continue;
		devs[i].started = true;
		if (pthread_create(&t, &attr, io_thread, &devs[i])) {
			devs[i].started = false;
			rc = -1;
		}
	}
	pthread_attr_destroy(&attr);
	return rc;
}

/*
 * Ends the traffic before a power-off, so that no request is in flight
 * when the kernel shuts the devices down (it would fail it, and the
 * failure would be reported): waits up to IO_TIMEOUT for every device
 * thread to finish its round, leaving a hung one alone.
 */
void io_stop(void)
{
	uint64_t until = jiffies_now() + IO_TIMEOUT;
	unsigned int i;

	__atomic_store_n(&stopping, true, __ATOMIC_RELEASE);
	for (i = 0; i < DEV_COUNT; i++)
		while (devs[i].started &&
		       __atomic_load_n(&devs[i].on, __ATOMIC_ACQUIRE) &&
		       !__atomic_load_n(&devs[i].stopped, __ATOMIC_ACQUIRE) &&
		       (int64_t)(jiffies_now() - until) < 0)
			sleep_until_jiffy(jiffies_now() + 1);
}

/*
 * Called by the main thread at jiffy @j: a device whose request has been
 * outstanding for IO_TIMEOUT, and in IO_TIMEOUT_CHECKS calls, is
 * reported once and left alone.
 */
void io_watchdog(uint64_t j)
{
	unsigned int i;

	for (i = 0; i < DEV_COUNT; i++) {
		struct iodev *d = &devs[i];
		uint64_t busy = __atomic_load_n(&d->busy, __ATOMIC_ACQUIRE);

		if (!busy || busy != d->wd_busy) {
			d->wd_busy = busy;
			d->wd_seen = 0;
		}
		if (!busy || ++d->wd_seen < IO_TIMEOUT_CHECKS ||
		    j + 1 - busy < IO_TIMEOUT ||
		    !__atomic_exchange_n(&d->on, false, __ATOMIC_ACQ_REL))
			continue;
		guest_fail("%s timeout", d->name);
	}
}

void io_totals(struct io_totals *t)
{
	t->blk_w = __atomic_load_n(&tot.blk_w, __ATOMIC_RELAXED);
	t->blk_r = __atomic_load_n(&tot.blk_r, __ATOMIC_RELAXED);
	t->blk_bad = __atomic_load_n(&tot.blk_bad, __ATOMIC_RELAXED);
	t->net_tx = __atomic_load_n(&tot.net_tx, __ATOMIC_RELAXED);
	t->net_rx = __atomic_load_n(&tot.net_rx, __ATOMIC_RELAXED);
	t->net_echo = __atomic_load_n(&tot.net_echo, __ATOMIC_RELAXED);
	t->net_bad = __atomic_load_n(&tot.net_bad, __ATOMIC_RELAXED);
	t->rng = __atomic_load_n(&tot.rng, __ATOMIC_RELAXED);
}
