/* SPDX-License-Identifier: MIT */
/*
 * The virtqueue walker against a hostile driver: the input is 64 KiB of
 * "guest memory" (repeated to fill it) plus the queue geometry and
 * features from its first bytes. The walker must never read or write
 * outside the buffer (ASan watches), loop forever, or crash; every chain
 * it returns must lie inside guest memory.
 */
#include <stdlib.h>
#include <string.h>

#include "kernel/dev/virtq.h"
#include "kernel/util/log.h"
#include "tests/fuzz/fuzz.h"

#define MEM_BASE 0x10000ULL
#define MEM_SIZE 0x10000ULL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[MEM_SIZE];
	static uint8_t dirty[MEM_SIZE / 4096];
	struct virtq_flat_mem flat = { buf, MEM_BASE, MEM_SIZE, dirty, 0 };
	struct virtq_chain chain;
	struct virtq_mem mem;
	struct virtq vq;
	uint8_t hdr[32] = { 0 }, tmp[256];
	unsigned int i, n;
	uint64_t features;

	log_set_level(LOG_QUIET);
	memcpy(hdr, data, size < sizeof(hdr) ? size : sizeof(hdr));
	for (i = 0; i < MEM_SIZE; i++)
		buf[i] = size ? data[i % size] : 0;
	virtq_mem_init_flat(&mem, &flat);
	virtq_init(&vq, &mem, 0, NULL, NULL);
	/* Geometry mostly inside memory, sometimes anywhere. */
	vq.s.size = (uint16_t)(1u << (hdr[0] % 16));
	vq.s.desc = MEM_BASE + ((hdr[1] | hdr[2] << 8) & 0xfff0);
	vq.s.avail = MEM_BASE + ((hdr[3] | hdr[4] << 8) & 0xfffe);
	vq.s.used = MEM_BASE + ((hdr[5] | hdr[6] << 8) & 0xfffc);
	if (hdr[7] & 1)
		memcpy(&vq.s.desc, hdr + 8, 8);
	features = (hdr[7] & 2 ? 1ULL << 28 : 0) | /* INDIRECT_DESC */
		   (hdr[7] & 4 ? 1ULL << 29 : 0);  /* EVENT_IDX */
	if (virtq_enable(&vq, features, 1024))
		return 0;
	/* Mostly a believable avail index, so that chains get walked. */
	if (!(hdr[7] & 8) && vq.s.avail - MEM_BASE + 4 <= MEM_SIZE) {
		uint16_t idx = (uint16_t)(hdr[16] % (vq.s.size + 1u));

		memcpy(buf + (vq.s.avail - MEM_BASE) + 2, &idx, 2);
	}
	for (n = 0; n < 64; n++) {
		int ret = virtq_pop(&vq, &chain);

		if (ret)
			break;
		for (i = 0; i < chain.nr; i++) {
			const struct virtq_seg *s = &chain.seg[i];

			if (s->gpa < MEM_BASE || s->len > MEM_SIZE ||
			    s->gpa - MEM_BASE > MEM_SIZE - s->len)
				abort(); /* a segment outside guest memory */
		}
		if (chain.ro_len)
			(void)!virtq_chain_read(&vq, &chain, 0, tmp,
						chain.ro_len < sizeof(tmp) ?
							chain.ro_len :
							sizeof(tmp));
		if (chain.wr_len)
			(void)!virtq_chain_write(&vq, &chain, 0, tmp,
						 chain.wr_len < sizeof(tmp) ?
							 chain.wr_len :
							 sizeof(tmp));
		(void)virtq_push(&vq, chain.head, chain.wr_len);
		(void)virtq_should_notify(&vq);
	}
	(void)virtq_rearm(&vq);
	return 0;
}
