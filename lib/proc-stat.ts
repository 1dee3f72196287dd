// /proc/<pid>/stat and /proc/<pid>/task/<tid>/stat: one line of space-separated fields,
// where the command name (field 2, in parentheses) may itself hold spaces and
// parentheses; so the fields after it are counted from its last ')'.

/** Field `field` (1-based, as proc(5) numbers them; 3 or later) of a stat line, as a number (NaN when absent). */
export function statField(stat: string, field: number): number {
  if (field < 3) throw new RangeError(`stat field ${field}: only fields after the command name (3 on) are read`);
  const close = stat.lastIndexOf(')');
  if (close < 0) return NaN;
  const value = stat.slice(close + 2).split(' ')[field - 3];
  return value === undefined || value === '' ? NaN : Number(value);
}
