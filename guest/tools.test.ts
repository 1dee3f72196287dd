// The DAX header decides whether a guest can mount the rootfs image with -o dax; the
// boot tests prove it works with the kernel, these pin the bytes it is made of.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { fletcher64, pfnInfoBlock } = require('./tools.js') as {
  fletcher64(buf: Buffer): bigint;
  pfnInfoBlock(dataOffset: number, align: number, uuidHex: string): Buffer;
};

const MiB = 1024 * 1024;
const UUID = '00112233445566778899aabbccddeeff';

describe('NVDIMM PFN info block (fsdax header of the rootfs image)', () => {
  it('computes the kernel\'s Fletcher-64 over little-endian 32-bit words', () => {
    const words = Buffer.alloc(12);
    [1, 2, 3].forEach((w, i) => words.writeUInt32LE(w, i * 4));
    // lo runs 1, 3, 6; hi sums those: 10.
    expect(fletcher64(words)).toBe((10n << 32n) | 6n);
    const wrap = Buffer.alloc(8, 0xff); // lo wraps at 2^32
    // lo: 0xffffffff, then 0xfffffffe; hi: 0x1fffffffd, whose top bit falls off the 64-bit result.
    expect(fletcher64(wrap)).toBe(0xfffffffdfffffffen);
  });

  it('lays out struct nd_pfn_sb: signature, uuid, version 1.2, data offset, RAM page map, alignment', () => {
    const sb = pfnInfoBlock(2 * MiB, 2 * MiB, UUID);
    expect(sb.length).toBe(4096);
    expect(sb.subarray(0, 16).toString('latin1')).toBe('NVDIMM_PFN_INFO\0');
    expect(sb.subarray(16, 32).toString('hex')).toBe(UUID);
    expect(sb.subarray(32, 48).equals(Buffer.alloc(16))).toBe(true); // no parent namespace
    expect([sb.readUInt16LE(52), sb.readUInt16LE(54)]).toEqual([1, 2]);
    expect(sb.readBigUInt64LE(56)).toBe(BigInt(2 * MiB));
    expect(sb.readUInt32LE(72)).toBe(1); // PFN_MODE_RAM: the guest writes nothing to the image
    expect(sb.readUInt32LE(84)).toBe(2 * MiB);
  });

  it('carries a checksum the kernel accepts: Fletcher-64 of the block with the checksum zeroed', () => {
    const sb = pfnInfoBlock(4 * MiB, 2 * MiB, UUID);
    const stored = sb.readBigUInt64LE(4088);
    const zeroed = Buffer.from(sb);
    zeroed.fill(0, 4088);
    expect(stored).toBe(fletcher64(zeroed));
    expect(stored).not.toBe(0n);
  });
});
