/* SPDX-License-Identifier: MIT */
/*
 * The ring-0 C code of the reference guest: system calls (the #UD handler
 * calls kern_syscall()) and the fault report. On hosts that emulate ring 0
 * every instruction here costs about half a microsecond, so it does only
 * what ring 3 cannot: port I/O, HLT and the interrupt flag.
 */
#include "ref.h"

#include "kernel/x86/vmrun_harness.h"

#define COM1 0x3f8
#define UART_LSR_THRE 0x20
#define UART_FIFO 16

#define PIT_HZ 1193182

volatile uint64_t jiffies;
volatile uint8_t tick_ipi;
uint64_t boot_info_addr;
uint32_t boot_kind;

extern char kstacks[];

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/*
 * Polled transmit, a FIFO's worth at a time: one LSR read, then one
 * REP OUTSB, which KVM turns into a single exit for the whole chunk.
 */
static void uart_write(const char *s, uint64_t n)
{
	while (n) {
		uint64_t chunk = n < UART_FIFO ? n : UART_FIFO;
		unsigned int spin = 256;

		while (!(inb(COM1 + 5) & UART_LSR_THRE) && --spin)
			;
		n -= chunk;
		__asm__ volatile("rep outsb"
				 : "+S"(s), "+c"(chunk)
				 : "d"((uint16_t)COM1)
				 : "memory");
	}
}

/*
 * Brings up the console, the timer and interrupt delivery: 16550 at
 * 115200 8N1 with FIFOs, 8259 pair remapped to 32..47 with only IRQ 0
 * unmasked, PIT channel 0 at REF_HZ, and the BSP's LAPIC enabled with
 * LINT0 as ExtINT (virtual wire), so PIC interrupts reach this CPU.
 */
static void kern_start(uint64_t ipi)
{
	uint16_t div = (PIT_HZ + REF_HZ / 2) / REF_HZ;

	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x80);
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);
	outb(COM1 + 2, 0xc7);
	outb(COM1 + 4, 0x03);

	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, VEC_PIC);
	outb(0xa1, VEC_PIC + 8);
	outb(0x21, 0x04);
	outb(0xa1, 0x02);
	outb(0x21, 0x01);
	outb(0xa1, 0x01);
	outb(0x21, 0xfe);
	outb(0xa1, 0xff);

	outb(0x43, 0x34);
	outb(0x40, (uint8_t)div);
	outb(0x40, (uint8_t)(div >> 8));

	mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	mmio_write32(LAPIC_BASE + LAPIC_LVT0, 0x700);
	tick_ipi = ipi != 0;
}

/*
 * Power off: vmrun's and QEMU q35's ACPI PM1a control (0x604), QEMU pc's
 * (0xb004), QEMU's isa-debug-exit at 0xf4 if present, then an i8042
 * reset (how Firecracker stops; QEMU -no-reboot exits on it).
 */
static __noreturn void kern_poweroff(void)
{
	outw(0x604, 0x2000);
	outw(0xb004, 0x2000);
	outl(0xf4, 0);
	outb(0x64, 0xfe);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/*
 * Called by the #UD stub for a UD2 in ring 3, with interrupts off, with
 * @nr from RAX and @a0, @a1 from RDI and RSI (@a2 is RDX, unused). @f is
 * the interrupt frame, whose RIP already points past the UD2.
 */
uint64_t kern_syscall(uint64_t a0, uint64_t a1, uint64_t a2 __unused,
		      uint64_t nr, struct iret_frame *f)
{
	switch (nr) {
	case SYS_WRITE:
		uart_write((const char *)a0, a1 < 4096 ? a1 : 4096);
		return 0;
	case SYS_IDLE:
		__asm__ volatile("sti; hlt; cli" ::: "memory");
		return 0;
	case SYS_START:
		kern_start(a0);
		f->rflags |= 0x200;
		return 0;
	case SYS_POWEROFF:
		kern_poweroff();
	case SYS_HARNESS:
		if ((a0 & 0xff) == VMRUN_HARNESS_ANNOUNCE)
			return vmrun_harness_announce(a1);
		vmrun_harness_outl(VMRUN_HARNESS_PORT_CMD, (uint32_t)a0);
		return 0;
	case SYS_UART_POKE:
		if (a0 == 1 || a0 == 7)
			outb((uint16_t)(COM1 + a0), (uint8_t)a1);
		return 0;
	}
	return ~0ULL;
}

/*
 * An unexpected exception: report it on the console, then reset the
 * machine (vmrun exits with "guest reset"; QEMU -no-reboot exits), so a
 * test sees the failure at once rather than at its time-out.
 */
void kern_fault(struct fault_frame *f)
{
	uint64_t cpu = ((uint64_t)f - (uint64_t)kstacks) >> REF_KSTACK_SHIFT;
	struct line l;
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	/* Under a fuzzer the fault is the execution's crash: the VMM resets
	 * the machine on this write and never comes back here. */
	if (fuzz_active)
		vmrun_harness_outl(VMRUN_HARNESS_PORT_CMD,
				   VMRUN_HARNESS_CRASH |
					   (uint32_t)((0x100 | f->vec) << 8));
	line_init(&l, "GUEST FAIL exception");
	line_kv(&l, "vec", f->vec);
	line_kx(&l, "err", f->err);
	line_kx(&l, "rip", f->rip);
	line_kx(&l, "cs", f->cs);
	line_kx(&l, "rsp", f->rsp);
	line_kx(&l, "cr2", cr2);
	line_kv(&l, "cpu", cpu);
	l.buf[l.len++] = '\n';
	uart_write(l.buf, l.len);
	outb(0x64, 0xfe);
	outb(0xcf9, 0x06);
	for (;;)
		__asm__ volatile("cli; hlt");
}
