/* SPDX-License-Identifier: MIT */
#ifndef VMM_REF_REF_H
#define VMM_REF_REF_H

/*
 * The reference guest kernel: declarations shared by its ring-0 part
 * (entry.S, kern.c) and its ring-3 part (main.c, work.c, virtio*.c).
 *
 * Every page is identity-mapped and user-accessible, so ring 3 is not a
 * protection boundary here: it is the mode that runs natively where ring-0
 * code is emulated. Ring 3 reaches ring 0 through UD2 ("sys_*" below).
 * See docs/guest.md.
 */

#define REF_MAX_CPUS 16
#define REF_HZ 100
#define REF_KSTACK_SHIFT 13 /* 8 KiB ring-0 stack per CPU */
#define REF_USTACK_SHIFT 15 /* 32 KiB ring-3 stack per CPU */

/* How the BSP was entered (RDX at common64 in entry.S). */
#define BOOT_VMRUN 1
#define BOOT_PVH 2

/* System calls: UD2 with RAX = number, RDI, RSI = arguments. */
#define SYS_WRITE 1	/* RDI = bytes, RSI = length: to the UART */
#define SYS_IDLE 2	/* halt until the next interrupt */
#define SYS_START 3	/* RDI = 1 to broadcast ticks; starts UART, PIC, PIT */
#define SYS_POWEROFF 4	/* never returns */
#define SYS_HARNESS 5	/* RDI = command word, RSI = descriptor address */
#define SYS_UART_POKE 6 /* RDI = register (1 IER, 7 SCR), RSI = value */

/* Interrupt vectors. */
#define VEC_UD 6
#define VEC_PIC 32 /* 8259 master IRQ 0..7 -> 32..39, slave -> 40..47 */
#define VEC_TIMER 32
#define VEC_IPI 0x40
#define VEC_SPURIOUS 0xff

#define LAPIC_BASE 0xfee00000
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_LVT0 0x350
/* Fixed IPI to all but self. */
#define LAPIC_ICR_TICK (0xc0000 | VEC_IPI)

#ifndef __ASSEMBLER__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

#define REF_PAGE 4096UL
#define REF_LINE_MAX 200

/* An interrupt frame as the CPU pushes it (no error code). */
struct iret_frame {
	uint64_t rip, cs, rflags, rsp, ss;
};

/* What the exception stubs pass to kern_fault(). */
struct fault_frame {
	uint64_t vec, err, rip, cs, rflags, rsp, ss;
};

/* entry.S */
extern char __end[];
extern const uint64_t exc_stubs[32];
void isr_timer(void);
void isr_ipi(void);
void isr_irq_master(void);
void isr_irq_slave(void);
void isr_spurious(void);

/* Shared between ring 0 and ring 3 (kern.c). */
extern volatile uint64_t jiffies; /* timer interrupts on the BSP */
extern volatile uint8_t tick_ipi; /* the timer handler wakes the APs */
extern uint64_t boot_info_addr;	  /* RSI at entry of the BSP */
extern uint32_t boot_kind;	  /* BOOT_* */
extern uint64_t idt[512];

/* kern.c: ring 0 only. */
uint64_t kern_syscall(uint64_t a0, uint64_t a1, uint64_t a2, uint64_t nr,
		      struct iret_frame *f);
__noreturn void kern_fault(struct fault_frame *f);

/* Ring-3 entry points to ring 0 (UD2; see kern_syscall()). */
static inline uint64_t sys_call(uint64_t nr, uint64_t a0, uint64_t a1)
{
	register uint64_t rax __asm__("rax") = nr;
	register uint64_t rdi __asm__("rdi") = a0;
	register uint64_t rsi __asm__("rsi") = a1;

	/* The handler is a C call: caller-saved registers are clobbered. */
	__asm__ volatile("ud2"
			 : "+r"(rax), "+r"(rdi), "+r"(rsi)
			 :
			 : "rcx", "rdx", "r8", "r9", "r10", "r11", "memory",
			   "cc");
	return rax;
}

static inline void sys_write(const char *s, size_t len)
{
	sys_call(SYS_WRITE, (uint64_t)s, len);
}

static inline void sys_idle(void)
{
	sys_call(SYS_IDLE, 0, 0);
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline void barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

/* A full fence without SSE2's MFENCE. */
static inline void mb(void)
{
	__asm__ volatile("lock; addl $0, (%%rsp)" ::: "memory", "cc");
}

static inline uint32_t mmio_read32(uint64_t addr)
{
	return *(volatile uint32_t *)addr;
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)addr = v;
}

static inline uint8_t mmio_read8(uint64_t addr)
{
	return *(volatile uint8_t *)addr;
}

/* lib.c: a line being formatted, for sys_write() or the UART. */
struct line {
	unsigned int len;
	char buf[REF_LINE_MAX];
};

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

void line_init(struct line *l, const char *s);
void line_str(struct line *l, const char *s);
void line_u64(struct line *l, uint64_t v);
void line_hex(struct line *l, uint64_t v);
/* Appends " key=<decimal>" or " key=0x<hex>". */
void line_kv(struct line *l, const char *key, uint64_t v);
void line_kx(struct line *l, const char *key, uint64_t v);
/* Ends the line with '\n' and writes it through sys_write(). */
void line_put(struct line *l);

/*
 * Parses a number at *s: decimal or 0x-hex, with an optional K, M or G
 * suffix. Advances *s. Returns false if there are no digits.
 */
bool parse_u64(const char **s, uint64_t *out);

uint64_t mix64(uint64_t x);

/* main.c */
struct ref_cfg {
	bool dirty;	      /* work=dirty (else idle) */
	uint64_t mib;	      /* memory the workload owns */
	uint64_t rate;	      /* MB/s over all CPUs, 0 = unlimited */
	uint64_t spin;	      /* spin=N: loop iterations of work per write */
	uint64_t verify_ms;   /* a verification pass starts this often */
	unsigned int pattern; /* PAT_* */
	uint64_t ticks;	      /* power off after this many reports; 0 never */
	uint64_t tick_ms;     /* the reporting interval */
	bool fuzz;	      /* work=fuzz (fuzz.c) */
	uint64_t fuzz_pages;  /* fuzz_pages=N: each execution writes N pages */
};

#define PAT_SEQ 0
#define PAT_RANDOM 1
#define PAT_HOT 2

/* Prints "GUEST FAIL <what>" (at most a few dozen over the run). */
void guest_fail(struct line *l);

/* fuzz.c */
extern volatile uint32_t fuzz_active;
__noreturn void fuzz_main(uint64_t base, uint64_t end, uint64_t pages,
			  uint64_t ticks);

/* work.c: the self-checking memory workload. */
struct work_totals {
	uint64_t written, verified, mismatches;
};

/* Lays out [base, end) for mib MiB; returns the MiB that fit. */
uint64_t work_setup(const struct ref_cfg *cfg, uint64_t base, uint64_t end,
		    unsigned int ncpus);
/* One bounded step of CPU slot @slot; returns true if it did anything. */
bool work_step(unsigned int slot);
void work_totals(struct work_totals *t);
/* On the BSP: prints failures other CPUs have posted. */
void work_report_fails(void);

/* virtio.c / vdev.c: virtio-mmio devices. */
struct vio_totals {
	uint64_t blk_w, blk_r, blk_bad, net_tx, net_rx, net_echo, net_bad,
		rng_bytes;
};

/* Probes one virtio-mmio window; @type is 0 to take any device id. */
void vdev_probe(uint64_t base, uint32_t type);
bool vdev_any(void);
/* One round of device traffic on the BSP (once per timer tick). */
void vdev_step(void);
void vdev_totals(struct vio_totals *t);

#endif /* !__ASSEMBLER__ */

#endif /* VMM_REF_REF_H */
