// Input for the batch modes of the tools that wire a pod's network namespace: `ip -batch`,
// `tc -batch` and `iptables-restore`. One process per tool, not one per step: each costs
// 10-15 ms of a pod's start on a busy host, and a pod's wiring was a dozen of them.
import { FailedPreconditionError } from '../lib/errors';

/**
 * What iproute2's batch parser reads as more than a word's own characters: white space
 * splits words, `#` starts a comment, a quote at a word's start quotes it, a backslash
 * at a line's end joins the next line. The kernel refuses white space in interface
 * names but not the rest, so a pod interface (named by CNI, Multus, the pod's author)
 * may carry them.
 */
const BATCH_SPECIAL = /[\s#'"\\]/;

/**
 * Commands for `ip -batch -` or `tc -batch -`, one per line. A word the parser would
 * read otherwise than as itself is refused, naming it, rather than sent: `dev eth1#x`
 * would wire eth1.
 */
export function batchInput(commands: string[][]): string {
  for (const word of commands.flat()) {
    if (word === '' || BATCH_SPECIAL.test(word)) throw new FailedPreconditionError(`cannot wire ${JSON.stringify(word)}: an interface name with white space, '#', a quote or a backslash cannot be given to ip or tc in batch mode; rename the pod interface`);
  }
  return commands.map((c) => `${c.join(' ')}\n`).join('');
}

/**
 * `iptables-restore --noflush` input that appends `rules` (as portForwardRules gives
 * them), table by table. Words are quoted for its parser, which splits at spaces. Its
 * parser also refuses a line naming the table again (`-t`, or a short option cluster
 * with a t in it): rules here never have one, the table is the `*` line.
 */
export function iptablesRestoreInput(rules: string[][]): string {
  const quote = (word: string): string => {
    if (/["\\\n]/.test(word)) throw new FailedPreconditionError(`cannot pass ${JSON.stringify(word)} to iptables-restore`);
    return /\s/.test(word) || word === '' ? `"${word}"` : word;
  };
  const tables = [...new Set(rules.map(([table]) => table))];
  return tables
    .map((table) => `*${table}\n${rules.filter(([t]) => t === table).map(([, chain, ...rule]) => `-A ${chain} ${rule.map(quote).join(' ')}\n`).join('')}COMMIT\n`)
    .join('');
}
