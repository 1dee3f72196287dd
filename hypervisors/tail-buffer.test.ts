import { TailBuffer } from './tail-buffer';

describe('TailBuffer', () => {
  it('returns what was pushed while it fits, and the last bytes once it does not', () => {
    const tail = new TailBuffer(8);
    expect(tail.tail().toString()).toBe('');
    tail.push(Buffer.from('abc'));
    tail.push(Buffer.from('de'));
    expect(tail.tail().toString()).toBe('abcde');
    expect(tail.tail(2).toString()).toBe('de');
    tail.push(Buffer.from('fghij'));
    expect(tail.tail().toString()).toBe('cdefghij');
    expect(tail.tail(100).toString()).toBe('cdefghij');
    expect(tail.totalBytes).toBe(10);
  });

  it('keeps only the end of a chunk larger than itself', () => {
    const tail = new TailBuffer(4);
    tail.push(Buffer.from('xy'));
    tail.push(Buffer.from('0123456789'));
    expect(tail.tail().toString()).toBe('6789');
    expect(tail.totalBytes).toBe(12);
  });

  it('agrees with the end of the whole stream for any sequence of chunk sizes (seeded)', () => {
    let seed = 0x7a11;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 50; round++) {
      const capacity = 1 + random(64);
      const tail = new TailBuffer(capacity);
      let all = '';
      for (let i = 0; i < 40; i++) {
        const chunk = Array.from({ length: random(3 * capacity) }, () => String.fromCharCode(97 + random(26))).join('');
        tail.push(Buffer.from(chunk));
        all += chunk;
        const ask = random(capacity + 4);
        expect({ capacity, ask, got: tail.tail(ask).toString() }).toEqual({ capacity, ask, got: all.slice(Math.max(0, all.length - Math.min(ask, capacity))) });
      }
      expect(tail.tail().length).toBe(Math.min(all.length, capacity));
    }
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new TailBuffer(0)).toThrow(RangeError);
    expect(() => new TailBuffer(1.5)).toThrow(RangeError);
  });
});
