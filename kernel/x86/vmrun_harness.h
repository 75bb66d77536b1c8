/* SPDX-License-Identifier: MIT */
#ifndef VMRUN_HARNESS_H
#define VMRUN_HARNESS_H

/*
 * The guest side of vmrun's fuzzing harness (docs/fuzzing.md). A guest
 * program includes this header (it needs only <stdint.h>) and talks to
 * the VMM through three 32-bit I/O ports:
 *
 *   1. Fill a struct vmrun_harness_desc: the input buffer, and the edge
 *      counters (AFL's map) if the target is built with them.
 *   2. vmrun_harness_announce(&desc): the VMM checks the descriptor and
 *      answers VMRUN_HARNESS_OK if a fuzzer is attached, ABSENT if none
 *      is (plain `vmrun run`), REFUSED if the descriptor is bad.
 *   3. Clear the counters, then vmrun_harness_checkpoint(): the VMM takes
 *      its checkpoint here (the first time) and writes an input into the
 *      buffer, its length into desc.input_len. Every execution starts
 *      right after this call, with the machine exactly as it was then.
 *   4. Run the target on the input, then vmrun_harness_done(), or
 *      vmrun_harness_crash(code) for a bug found without a fault. A guest
 *      fault that reaches a reset, a triple fault, a power-off and the
 *      VMM's time-out end an execution too.
 *
 * Addresses are guest-physical. Port I/O needs ring 0, or ioperm() in a
 * Linux user program.
 */

#include <stdint.h>

#define VMRUN_HARNESS_PORT 0x0f00u
#define VMRUN_HARNESS_PORT_CMD (VMRUN_HARNESS_PORT + 0)	   /* w: command */
#define VMRUN_HARNESS_PORT_STATUS (VMRUN_HARNESS_PORT + 0) /* r: status */
#define VMRUN_HARNESS_PORT_LO (VMRUN_HARNESS_PORT + 4)	   /* descriptor */
#define VMRUN_HARNESS_PORT_HI (VMRUN_HARNESS_PORT + 8)	   /* address */
#define VMRUN_HARNESS_PORTS 12u

/* Commands: bits 0..7 of the word written; CRASH carries a code above. */
#define VMRUN_HARNESS_ANNOUNCE 1u
#define VMRUN_HARNESS_CHECKPOINT 2u
#define VMRUN_HARNESS_DONE 3u
#define VMRUN_HARNESS_CRASH 4u

/* What reading the status port returns after an announce. */
#define VMRUN_HARNESS_ABSENT 0u	 /* no fuzzer: run on without one */
#define VMRUN_HARNESS_OK 1u	 /* a fuzzer took the descriptor */
#define VMRUN_HARNESS_REFUSED 2u /* bad descriptor; the VMM says why */

#define VMRUN_HARNESS_MAGIC 0x5a464d56u /* "VMFZ" */
#define VMRUN_HARNESS_VERSION 1u
#define VMRUN_HARNESS_INPUT_MAX (1u << 20)
#define VMRUN_HARNESS_COV_MIN 64u
#define VMRUN_HARNESS_COV_MAX (1u << 16)

struct vmrun_harness_desc {
	uint32_t magic;	    /* VMRUN_HARNESS_MAGIC */
	uint32_t version;   /* VMRUN_HARNESS_VERSION */
	uint64_t input_gpa; /* the buffer each input is written into */
	uint32_t input_max; /* its size: 1 .. VMRUN_HARNESS_INPUT_MAX */
	uint32_t input_len; /* set by the VMM before each execution */
	uint64_t cov_gpa;   /* edge counters, page aligned; 0: none */
	uint32_t cov_size;  /* a power of two, COV_MIN .. COV_MAX; or 0 */
	uint32_t flags;	    /* 0 */
};

static inline void vmrun_harness_outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint32_t vmrun_harness_inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline uint32_t vmrun_harness_announce(uint64_t desc_gpa)
{
	vmrun_harness_outl(VMRUN_HARNESS_PORT_LO, (uint32_t)desc_gpa);
	vmrun_harness_outl(VMRUN_HARNESS_PORT_HI, (uint32_t)(desc_gpa >> 32));
	vmrun_harness_outl(VMRUN_HARNESS_PORT_CMD, VMRUN_HARNESS_ANNOUNCE);
	return vmrun_harness_inl(VMRUN_HARNESS_PORT_STATUS);
}

static inline void vmrun_harness_checkpoint(void)
{
	vmrun_harness_outl(VMRUN_HARNESS_PORT_CMD, VMRUN_HARNESS_CHECKPOINT);
}

static inline void vmrun_harness_done(void)
{
	vmrun_harness_outl(VMRUN_HARNESS_PORT_CMD, VMRUN_HARNESS_DONE);
}

/* @code: 0 .. 0xffffff, reported with the crash. */
static inline void vmrun_harness_crash(uint32_t code)
{
	vmrun_harness_outl(VMRUN_HARNESS_PORT_CMD,
			   VMRUN_HARNESS_CRASH | (code << 8));
}

#endif /* VMRUN_HARNESS_H */
