import * as fs from 'fs';
import { statField } from './proc-stat';

describe('statField', () => {
  it('counts fields after the last parenthesis, so a command name with spaces and parentheses does not shift them', () => {
    const line = '4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 10 0 0 0 5 6 0 0 20 19 3 0 987654 100 50\n';
    expect(statField(line, 3)).toBeNaN(); // the state, a letter
    expect(statField(line, 4)).toBe(1); // ppid
    expect(statField(line, 19)).toBe(19); // nice
    expect(statField(line, 22)).toBe(987654); // start time
    expect(statField(line, 40)).toBeNaN();
    expect(statField('', 22)).toBeNaN();
    expect(() => statField(line, 2)).toThrow(RangeError);
  });

  it("reads this process's own start time and niceness", () => {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    expect(Number.isInteger(statField(stat, 22))).toBe(true);
    expect(statField(stat, 19)).toBe(require('os').getPriority());
  });
});
