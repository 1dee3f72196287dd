#!/usr/bin/env node
// Build helpers for guest/build.sh (run with the host's node; plain CommonJS, no deps).
//
//   node tools.js modules <moddir> <required,...> <optional,...>
//       Resolves kernel module names against <moddir>/modules.dep (+ modules.builtin) and
//       prints the module files (relative to <moddir>) in load order: dependencies first.
//       Built-in modules are satisfied silently; a missing required module is an error,
//       a missing optional one a warning.
//   node tools.js npmdeps <agentdir> <extra,...> <dir>...
//       Scans the JS files under the given dirs for require("pkg") of non-builtin packages,
//       adds <extra>, and prints the package directories (relative to <agentdir>) of their
//       production dependency closure, resolved the way node resolves them at run time.
//   node tools.js manifest <out.json> <inputs.txt> key=value...
//       Writes manifest.json.
//   node tools.js daxheader <image> <data-offset> <align> <uuid-hex>
//       Writes the 4 KiB NVDIMM "PFN info" block at offset 4 KiB of <image>, which puts
//       the guest's label-less pmem namespace in fsdax mode: /dev/pmem0 then starts at
//       <data-offset> and ext4 on it can be mounted with -o dax.
'use strict';
const fs = require('fs');
const path = require('path');

function die(msg) {
  process.stderr.write(`guest: error: ${msg}\n`);
  process.exit(1);
}
const list = (s) => (s || '').split(/[,\s]+/).filter(Boolean);
const norm = (name) => name.replace(/-/g, '_');
const modName = (file) => norm(path.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, ''));

function modules(moddir, required, optional) {
  const depFile = path.join(moddir, 'modules.dep');
  if (!fs.existsSync(depFile)) die(`${depFile} missing (depmod not run?)`);
  const deps = new Map(); // name -> {file, deps: [file]}
  const byFile = new Map();
  for (const line of fs.readFileSync(depFile, 'utf8').split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const entry = { file: m[1], deps: list(m[2]) };
    deps.set(modName(m[1]), entry);
    byFile.set(m[1], entry);
  }
  const builtin = new Set();
  const builtinFile = path.join(moddir, 'modules.builtin');
  if (fs.existsSync(builtinFile)) {
    for (const line of fs.readFileSync(builtinFile, 'utf8').split('\n')) if (line) builtin.add(modName(line));
  }
  const out = [];
  const done = new Set();
  const visit = (entry) => {
    if (done.has(entry.file)) return;
    done.add(entry.file);
    for (const d of entry.deps) {
      const de = byFile.get(d);
      if (!de) die(`modules.dep: ${entry.file} needs ${d}, which has no entry`);
      visit(de);
    }
    out.push(entry.file);
  };
  for (const [names, isRequired] of [[required, true], [optional, false]]) {
    for (const raw of names) {
      const name = norm(raw);
      const entry = deps.get(name);
      if (entry) visit(entry);
      else if (builtin.has(name)) process.stderr.write(`guest: module ${raw} is built into the kernel\n`);
      else if (isRequired) die(`required kernel module ${raw} not found in ${moddir}`);
      else process.stderr.write(`guest: warning: optional kernel module ${raw} not found, skipped\n`);
    }
  }
  process.stdout.write(out.join('\n') + '\n');
}

function walkJs(dir, files) {
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) walkJs(p, files);
    else if (/\.(c|m)?js$/.test(ent.name)) files.push(p);
  }
  return files;
}

function npmdeps(agentDir, extra, dirs) {
  const builtins = new Set(require('module').builtinModules);
  const wanted = new Set(extra);
  const re = /\brequire\(\s*["']([^"']+)["']\s*\)/g;
  for (const d of dirs) {
    if (!fs.existsSync(d)) continue;
    for (const f of walkJs(d, [])) {
      const src = fs.readFileSync(f, 'utf8');
      for (const m of src.matchAll(re)) {
        const spec = m[1];
        if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) continue;
        const parts = spec.split('/');
        const pkg = spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
        if (builtins.has(pkg) || builtins.has(spec)) continue;
        wanted.add(pkg);
      }
    }
  }
  const root = path.resolve(agentDir);
  const seen = new Set();
  const find = (name, from) => {
    for (let d = from; ; d = path.dirname(d)) {
      const c = path.join(d, 'node_modules', name);
      if (fs.existsSync(path.join(c, 'package.json'))) return c;
      if (d === root || d === path.dirname(d)) return null;
    }
  };
  const visit = (name, from, optional, why) => {
    if (name.startsWith('@types/')) return; // type declarations only
    const dir = find(name, from);
    if (!dir) {
      if (optional) return;
      die(`node package ${name} (needed by ${why}) not found under ${root}/node_modules: run npm ci`);
    }
    if (seen.has(dir)) return;
    seen.add(dir);
    const pj = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    for (const n of Object.keys(pj.dependencies || {})) visit(n, dir, false, name);
    for (const n of Object.keys(pj.optionalDependencies || {})) visit(n, dir, true, name);
  };
  for (const w of [...wanted].sort()) visit(w, root, false, 'the agent');
  const rel = [...seen].map((d) => path.relative(root, d)).sort();
  if (rel.length) process.stdout.write(rel.join('\n') + '\n');
}

function manifest(outFile, inputsFile, kvs) {
  const m = {};
  for (const kv of kvs) {
    const i = kv.indexOf('=');
    const key = kv.slice(0, i);
    const val = kv.slice(i + 1);
    if (key.endsWith('[]')) m[key.slice(0, -2)] = list(val);
    else m[key] = /^\d+$/.test(val) ? Number(val) : val;
  }
  m.hashInputs = fs.readFileSync(inputsFile, 'utf8').split('\n').filter(Boolean);
  fs.writeFileSync(outFile, JSON.stringify(m, null, 2) + '\n');
}

// --- DAX header --------------------------------------------------------------------------
// The layout of the kernel's struct nd_pfn_sb (drivers/nvdimm/pfn.h), all little-endian:
// signature[16] uuid[16] parent_uuid[16] flags:u32 version_major:u16 version_minor:u16
// dataoff:u64 npfns:u64 mode:u32 start_pad:u32 end_trunc:u32 align:u32, zero padding,
// and a Fletcher-64 checksum in the last 8 of its 4096 bytes.
const PFN_INFO_OFFSET = 4096;
const PFN_INFO_SIZE = 4096;
/** The page map (struct pages) lives in guest RAM, so the guest never writes to the image. */
const PFN_MODE_RAM = 1;

/** The kernel's nd_fletcher64 over little-endian 32-bit words. */
function fletcher64(buf) {
  let lo = 0;
  let hi = 0n;
  for (let i = 0; i < buf.length; i += 4) {
    lo = (lo + buf.readUInt32LE(i)) >>> 0;
    hi = (hi + BigInt(lo)) & 0xffffffffffffffffn;
  }
  return ((hi << 32n) | BigInt(lo)) & 0xffffffffffffffffn;
}

function pfnInfoBlock(dataOffset, align, uuidHex) {
  const uuid = Buffer.from(uuidHex, 'hex');
  if (uuid.length !== 16) die(`daxheader: uuid must be 32 hex digits, got ${uuidHex}`);
  if (dataOffset % align !== 0 || dataOffset < PFN_INFO_OFFSET + PFN_INFO_SIZE) die(`daxheader: data offset ${dataOffset} must be a multiple of ${align} past the info block`);
  const sb = Buffer.alloc(PFN_INFO_SIZE);
  sb.write('NVDIMM_PFN_INFO\0', 0, 'latin1');
  uuid.copy(sb, 16);
  // parent_uuid stays zero: a label-less namespace (QEMU's NVDIMM without labels) has none.
  sb.writeUInt16LE(1, 52); // version 1.2: the align field is valid, later fields default
  sb.writeUInt16LE(2, 54);
  sb.writeBigUInt64LE(BigInt(dataOffset), 56);
  sb.writeUInt32LE(PFN_MODE_RAM, 72);
  sb.writeUInt32LE(align, 84);
  sb.writeBigUInt64LE(fletcher64(sb), PFN_INFO_SIZE - 8);
  return sb;
}

function daxheader(image, dataOffset, align, uuidHex) {
  const fd = fs.openSync(image, 'r+');
  try {
    fs.writeSync(fd, pfnInfoBlock(Number(dataOffset), Number(align), uuidHex), 0, PFN_INFO_SIZE, PFN_INFO_OFFSET);
  } finally {
    fs.closeSync(fd);
  }
}

module.exports = { fletcher64, pfnInfoBlock, PFN_INFO_OFFSET };

if (require.main === module) {
  const [cmd, ...args] = process.argv.slice(2);
  if (cmd === 'modules') modules(args[0], list(args[1]), list(args[2]));
  else if (cmd === 'npmdeps') npmdeps(args[0], list(args[1]), args.slice(2));
  else if (cmd === 'manifest') manifest(args[0], args[1], args.slice(2));
  else if (cmd === 'daxheader') daxheader(args[0], args[1], args[2], args[3]);
  else die(`tools.js: unknown command ${cmd}`);
}
