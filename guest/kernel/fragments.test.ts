// The guest kernel's configuration fragments, and the built kernel when there is one.
// build.sh already refuses a fragment line Kconfig drops; this keeps what pods rely on
// from being dropped from the fragments themselves, and checks that the kernel the
// current guest image boots was configured from these fragments and has it.
import * as fs from 'fs';
import * as path from 'path';

const FRAGMENTS_DIR = path.join(__dirname, 'fragments');
const GUEST_OUT = path.join(__dirname, '..', 'out');

/**
 * What privileged pods, CNI plugins in a pod and service-mesh sidecars need (issue 16 C):
 * bridge, veth, tun; iptables/ip6tables with nat, conntrack state and the common
 * matches and targets, through the legacy and the nf_tables (iptables-nft) front ends.
 */
const POD_NETWORKING = [
  'BRIDGE', 'BRIDGE_NETFILTER', 'VETH', 'TUN',
  'NETFILTER', 'NETFILTER_ADVANCED', 'NF_CONNTRACK', 'NF_NAT', 'NETFILTER_XTABLES',
  'IP_NF_IPTABLES', 'IP_NF_FILTER', 'IP_NF_NAT', 'IP_NF_MANGLE', 'IP_NF_RAW',
  'IP_NF_TARGET_MASQUERADE', 'IP_NF_TARGET_REDIRECT', 'IP_NF_TARGET_REJECT',
  'IP6_NF_IPTABLES', 'IP6_NF_FILTER', 'IP6_NF_NAT', 'IP6_NF_TARGET_MASQUERADE',
  'NETFILTER_XT_NAT', 'NETFILTER_XT_TARGET_MASQUERADE', 'NETFILTER_XT_TARGET_REDIRECT', 'NETFILTER_XT_TARGET_TPROXY',
  'NETFILTER_XT_MARK', 'NETFILTER_XT_CONNMARK',
  'NETFILTER_XT_MATCH_CONNTRACK', 'NETFILTER_XT_MATCH_STATE', 'NETFILTER_XT_MATCH_ADDRTYPE', 'NETFILTER_XT_MATCH_COMMENT',
  'NETFILTER_XT_MATCH_MULTIPORT', 'NETFILTER_XT_MATCH_MARK', 'NETFILTER_XT_MATCH_OWNER', 'NETFILTER_XT_MATCH_SOCKET',
  'NETFILTER_XT_MATCH_PHYSDEV', 'NETFILTER_XT_MATCH_STATISTIC',
  'NF_TABLES', 'NF_TABLES_INET', 'NF_TABLES_IPV4', 'NF_TABLES_IPV6', 'NFT_COMPAT', 'NFT_CT', 'NFT_NAT', 'NFT_MASQ', 'NFT_REDIR',
  'IP_MULTIPLE_TABLES',
  'IKCONFIG_PROC',
].map((o) => `CONFIG_${o}=y`);

/** The setting lines of a fragment or .config: "CONFIG_X=v" and "# CONFIG_X is not set". */
function settings(text: string): string[] {
  return text.split('\n').filter((l) => /^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$/.test(l));
}

function fragmentFiles(): string[] {
  return fs.readdirSync(FRAGMENTS_DIR).filter((f) => f.endsWith('.conf')).sort();
}

function fragmentSettings(): string[] {
  return fragmentFiles().flatMap((f) => settings(fs.readFileSync(path.join(FRAGMENTS_DIR, f), 'utf8')));
}

/** The built kernel of the current guest image (manifest's kernelBuild), if there is one. */
function builtKernelDir(): string | undefined {
  try {
    const manifest = JSON.parse(fs.readFileSync(path.join(GUEST_OUT, 'current', 'manifest.json'), 'utf8')) as { kernelBuild?: string };
    const cache = process.env.GUEST_CACHE ?? path.join(GUEST_OUT, 'cache');
    const dir = manifest.kernelBuild && path.join(cache, 'kernel-built', manifest.kernelBuild);
    return dir && fs.existsSync(path.join(dir, 'config')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

describe('guest kernel fragments', () => {
  it('ask for everything pod networking needs, built in', () => {
    const asked = new Set(fragmentSettings());
    expect(POD_NETWORKING.filter((line) => !asked.has(line))).toEqual([]);
  });

  it('never give one option two values', () => {
    const values = new Map<string, Set<string>>();
    for (const line of fragmentSettings()) {
      const name = /CONFIG_[A-Za-z0-9_]+/.exec(line)![0];
      values.set(name, (values.get(name) ?? new Set()).add(line));
    }
    expect([...values].filter(([, v]) => v.size > 1).map(([name]) => name)).toEqual([]);
  });

  // The built kernel counts only if it was configured from exactly these fragments
  // (build.sh records them); after a fragment change, `guest/build.sh` first.
  const built = builtKernelDir();
  const recorded = built && fs.existsSync(path.join(built, 'fragments.config')) ? settings(fs.readFileSync(path.join(built, 'fragments.config'), 'utf8')) : undefined;
  const current = recorded !== undefined && [...recorded].sort().join('\n') === [...fragmentSettings()].sort().join('\n');
  (current ? it : it.skip)(`the current guest image's kernel has every fragment line in its .config (${built ?? 'no built kernel'}${current ? '' : ': not built from these fragments'})`, () => {
    const config = new Set(settings(fs.readFileSync(path.join(built!, 'config'), 'utf8')));
    const honoured = (line: string): boolean => (line.startsWith('# ') ? !config.has(`${line.slice(2).split(' ')[0]}=y`) : config.has(line));
    expect(fragmentSettings().filter((line) => !honoured(line))).toEqual([]);
    expect(POD_NETWORKING.filter((line) => !config.has(line))).toEqual([]);
  });
});
