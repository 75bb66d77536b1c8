/* SPDX-License-Identifier: MIT */
/*
 * The virtio-blk, virtio-net and virtio-rng drivers and the traffic the
 * workload sends through them: one round per timer tick on the BSP, each
 * request waited for by polling.
 *
 * blk: the first BLK_SECTORS sectors are a test area. A write round
 *   stamps BLK_BATCH sectors with a new generation and reads them back; a
 *   verify round re-reads an older batch. Sector k holds "VMRUNBLK", k,
 *   its generation, a checksum of the rest, then a pattern from (k, gen).
 *   Only sectors written since boot are checked (the disk may hold
 *   anything before). A read-only disk is only read.
 * net: broadcasts one frame per round (ethertype 0x88b5, "VMRUNNET",
 *   sequence, ~sequence) and counts what comes back; a received frame of
 *   ours is an echo, one with a broken payload a mismatch.
 * rng: reads 64 bytes per round.
 */
#include "virtio.h"

#include "kernel/x86/vmrun_boot.h"

#define SECTOR 512
#define BLK_SECTORS 2048
#define BLK_BATCH 8
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_F_RO (1ULL << 5)

#define NET_F_MAC (1ULL << 5)
#define NET_HDR 12 /* virtio_net_hdr with num_buffers (VERSION_1) */
#define NET_NRX 8
#define NET_BUF 2048
#define NET_FRAME 60
#define NET_ETHERTYPE 0x88b5

#define RNG_BUF 64

struct blk_req {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static struct {
	struct virtq q;
	struct vdev d;
	bool on, ro;
	uint64_t nsect, wnext, vnext;
	struct blk_req req;
	uint8_t status;
	uint32_t gen[BLK_SECTORS];
	uint8_t wbuf[BLK_BATCH * SECTOR] __attribute__((aligned(512)));
	uint8_t rbuf[BLK_BATCH * SECTOR] __attribute__((aligned(512)));
	uint8_t want[SECTOR];
} blk;

static struct {
	struct virtq rxq, txq;
	struct vdev d;
	bool on;
	uint8_t mac[6];
	uint64_t seq;
	uint8_t rx[NET_NRX][NET_BUF];
	uint8_t tx[NET_HDR + NET_FRAME];
} net;

static struct {
	struct virtq q;
	struct vdev d;
	bool on;
	uint8_t buf[RNG_BUF];
} rng;

static struct vio_totals tot;
static bool found; /* any device ever came up */

static void dev_line(const char *name, const char *what, uint64_t base,
		     struct line *l)
{
	line_init(l, "GUEST DEV ");
	line_str(l, name);
	line_str(l, " ");
	line_str(l, what);
	line_kx(l, "base", base);
}

static void dev_skip(const char *name, uint64_t base, const char *why)
{
	struct line l;

	dev_line(name, "skip", base, &l);
	line_str(&l, " why=");
	line_str(&l, why);
	line_put(&l);
}

/* A device that stopped answering: say so once and leave it alone. */
static void dev_dead(const char *name, bool *on)
{
	struct line l;

	*on = false;
	line_init(&l, name);
	line_str(&l, " timeout");
	guest_fail(&l);
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

static bool blk_rw(uint32_t type, uint64_t sector, uint8_t *buf, unsigned int n)
{
	struct virtq *q = &blk.q;
	uint32_t id, len;

	blk.req.type = type;
	blk.req.reserved = 0;
	blk.req.sector = sector;
	blk.status = 0xff;
	vq_desc(q, 0, &blk.req, sizeof(blk.req), VIRTQ_DESC_F_NEXT, 1);
	vq_desc(q, 1, buf, n * SECTOR,
		VIRTQ_DESC_F_NEXT | (type == BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0),
		2);
	vq_desc(q, 2, &blk.status, 1, VIRTQ_DESC_F_WRITE, 0);
	vq_post(q, 0);
	vq_notify(&blk.d, q);
	if (!vq_wait(q, &id, &len)) {
		dev_dead("blk", &blk.on);
		return false;
	}
	if (__atomic_load_n(&blk.status, __ATOMIC_ACQUIRE)) {
		struct line l;

		tot.blk_bad++;
		line_init(&l, "blk status");
		line_kv(&l, "code", blk.status);
		line_kv(&l, "sector", sector);
		guest_fail(&l);
		return false;
	}
	if (type == BLK_T_IN)
		tot.blk_r += n;
	else
		tot.blk_w += n;
	return true;
}

/* Checks sectors [k, k + n) in rbuf against the generations written. */
static void blk_check(uint64_t k, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		const uint8_t *got = blk.rbuf + i * SECTOR;
		struct line l;

		if (!blk.gen[k + i])
			continue;
		blk_make(blk.want, k + i, blk.gen[k + i]);
		if (!memcmp(got, blk.want, SECTOR))
			continue;
		tot.blk_bad++;
		line_init(&l, "blk");
		line_kv(&l, "sector", k + i);
		line_kv(&l, "want_gen", blk.gen[k + i]);
		line_kv(&l, "got_gen", ((const uint64_t *)got)[2]);
		guest_fail(&l);
	}
}

static void blk_step(void)
{
	uint64_t k;
	unsigned int n, i;

	if (!blk.ro) {
		k = blk.wnext;
		n = (unsigned int)MIN((uint64_t)BLK_BATCH, blk.nsect - k);
		for (i = 0; i < n; i++)
			blk_make(blk.wbuf + i * SECTOR, k + i,
				 blk.gen[k + i] + 1);
		if (!blk_rw(BLK_T_OUT, k, blk.wbuf, n))
			return;
		for (i = 0; i < n; i++)
			blk.gen[k + i]++;
		if (!blk_rw(BLK_T_IN, k, blk.rbuf, n))
			return;
		blk_check(k, n);
		blk.wnext = k + n == blk.nsect ? 0 : k + n;
	}
	k = blk.vnext;
	n = (unsigned int)MIN((uint64_t)BLK_BATCH, blk.nsect - k);
	if (!blk_rw(BLK_T_IN, k, blk.rbuf, n))
		return;
	blk_check(k, n);
	blk.vnext = k + n == blk.nsect ? 0 : k + n;
}

static const char *blk_init(uint64_t base, struct line *l)
{
	const char *why;
	uint64_t cap;

	why = vdev_init(&blk.d, base, VMRUN_DEV_VIRTIO_BLK, BLK_F_RO);
	if (!why)
		why = vq_init(&blk.d, &blk.q, 0);
	if (why)
		return why;
	cap = vdev_config32(&blk.d, 4);
	cap = cap << 32 | vdev_config32(&blk.d, 0);
	if (!cap) {
		vdev_failed(&blk.d);
		return "empty-disk";
	}
	blk.ro = blk.d.features & BLK_F_RO;
	blk.nsect = MIN(cap, (uint64_t)BLK_SECTORS);
	/* The verify rounds trail the write rounds by half the area. */
	blk.vnext = blk.nsect / 2 / BLK_BATCH * BLK_BATCH;
	vdev_driver_ok(&blk.d);
	blk.on = true;
	line_kv(l, "sectors", cap);
	if (blk.ro)
		line_str(l, " ro");
	/*
	 * Host to guest: a sector the host wrote just past the test area,
	 * starting "VMRUNHST", is read once and its checksum reported, so a
	 * test can tell the guest sees what the host put in the image.
	 */
	if (cap > BLK_SECTORS && blk_rw(BLK_T_IN, BLK_SECTORS, blk.rbuf, 1) &&
	    !memcmp(blk.rbuf, "VMRUNHST", 8)) {
		const uint64_t *q = (const uint64_t *)blk.rbuf;
		uint64_t sum = 0;
		unsigned int i;

		for (i = 0; i < SECTOR / 8; i++)
			sum = (sum << 1 | sum >> 63) ^ q[i];
		line_kx(l, "host", sum);
	}
	return NULL;
}

static void net_frame(void)
{
	uint8_t *f = net.tx + NET_HDR;
	uint64_t seq = net.seq++, inv = ~seq;

	memset(net.tx, 0, sizeof(net.tx));
	memset(f, 0xff, 6);
	memcpy(f + 6, net.mac, 6);
	f[12] = NET_ETHERTYPE >> 8;
	f[13] = NET_ETHERTYPE & 0xff;
	memcpy(f + 14, "VMRUNNET", 8);
	memcpy(f + 22, &seq, 8);
	memcpy(f + 30, &inv, 8);
}

static void net_step(void)
{
	uint32_t id, len;
	bool repost = false;

	while (vq_get(&net.rxq, &id, &len)) {
		const uint8_t *f = net.rx[id % NET_NRX] + NET_HDR;
		uint64_t seq, inv;

		tot.net_rx++;
		if (len >= NET_HDR + 38 && f[12] == (NET_ETHERTYPE >> 8) &&
		    f[13] == (NET_ETHERTYPE & 0xff) &&
		    !memcmp(f + 14, "VMRUNNET", 8)) {
			memcpy(&seq, f + 22, 8);
			memcpy(&inv, f + 30, 8);
			if (seq == ~inv) {
				tot.net_echo++;
			} else {
				struct line l;

				tot.net_bad++;
				line_init(&l, "net bad-echo");
				guest_fail(&l);
			}
		}
		vq_post(&net.rxq, (uint16_t)(id % NET_NRX));
		repost = true;
	}
	if (repost)
		vq_notify(&net.d, &net.rxq);

	net_frame();
	vq_desc(&net.txq, 0, net.tx, sizeof(net.tx), 0, 0);
	vq_post(&net.txq, 0);
	vq_notify(&net.d, &net.txq);
	if (!vq_wait(&net.txq, &id, &len)) {
		dev_dead("net", &net.on);
		return;
	}
	tot.net_tx++;
}

static const char *net_init(uint64_t base, struct line *l)
{
	const char *why;
	static const uint8_t mac_default[6] = {
		0x52, 0x54, 0, 0x12, 0x34, 0x56
	};
	uint64_t mac = 0;
	unsigned int i;

	why = vdev_init(&net.d, base, VMRUN_DEV_VIRTIO_NET, NET_F_MAC);
	if (!why)
		why = vq_init(&net.d, &net.rxq, 0);
	if (!why)
		why = vq_init(&net.d, &net.txq, 1);
	if (why)
		return why;
	for (i = 0; i < 6; i++) {
		net.mac[i] = net.d.features & NET_F_MAC ?
				     vdev_config8(&net.d, i) :
				     mac_default[i];
		mac = mac << 8 | net.mac[i];
	}
	for (i = 0; i < NET_NRX && i < net.rxq.size; i++) {
		vq_desc(&net.rxq, (uint16_t)i, net.rx[i], NET_BUF,
			VIRTQ_DESC_F_WRITE, 0);
		vq_post(&net.rxq, (uint16_t)i);
	}
	vdev_driver_ok(&net.d);
	vq_notify(&net.d, &net.rxq);
	net.on = true;
	line_kx(l, "mac", mac);
	return NULL;
}

static void rng_step(void)
{
	uint32_t id, len;

	vq_desc(&rng.q, 0, rng.buf, RNG_BUF, VIRTQ_DESC_F_WRITE, 0);
	vq_post(&rng.q, 0);
	vq_notify(&rng.d, &rng.q);
	if (!vq_wait(&rng.q, &id, &len)) {
		dev_dead("rng", &rng.on);
		return;
	}
	if (len > RNG_BUF) {
		struct line l;

		line_init(&l, "rng");
		line_kv(&l, "len", len);
		guest_fail(&l);
		return;
	}
	tot.rng_bytes += len;
}

static const char *rng_init(uint64_t base, struct line *l __unused)
{
	const char *why;

	why = vdev_init(&rng.d, base, VMRUN_DEV_VIRTIO_RNG, 0);
	if (!why)
		why = vq_init(&rng.d, &rng.q, 0);
	if (why)
		return why;
	vdev_driver_ok(&rng.d);
	rng.on = true;
	return NULL;
}

void vdev_probe(uint64_t base, uint32_t type)
{
	const char *name, *why;
	struct line l;
	bool taken;

	if (!type) {
		/* From the command line: ask the device, skip empty slots. */
		if (mmio_read32(base) != VIRTIO_MMIO_MAGIC) {
			dev_skip("other", base, "no-magic");
			return;
		}
		type = mmio_read32(base + VIRTIO_MMIO_DEVICE_ID);
		if (!type)
			return;
	}
	switch (type) {
	case VMRUN_DEV_VIRTIO_BLK:
		name = "blk";
		taken = blk.on;
		break;
	case VMRUN_DEV_VIRTIO_NET:
		name = "net";
		taken = net.on;
		break;
	case VMRUN_DEV_VIRTIO_RNG:
		name = "rng";
		taken = rng.on;
		break;
	default:
		dev_skip("other", base, "unsupported-type");
		return;
	}
	if (taken) {
		dev_skip(name, base, "one-per-type");
		return;
	}
	dev_line(name, "ok", base, &l);
	if (type == VMRUN_DEV_VIRTIO_BLK)
		why = blk_init(base, &l);
	else if (type == VMRUN_DEV_VIRTIO_NET)
		why = net_init(base, &l);
	else
		why = rng_init(base, &l);
	if (why) {
		dev_skip(name, base, why);
		return;
	}
	found = true;
	line_put(&l);
}

bool vdev_any(void)
{
	return found;
}

void vdev_step(void)
{
	if (blk.on)
		blk_step();
	if (net.on)
		net_step();
	if (rng.on)
		rng_step();
}

void vdev_totals(struct vio_totals *t)
{
	*t = tot;
}
