// A small SVG line chart of host memory per idle pod against the number of pods.
export type MemorySeries = Record<string, Array<{ pods: number; perPodMiB: number }>>;

const COLORS = ['#1f77b4', '#d62728', '#2ca02c'];

export function memoryPlotSvg(series: MemorySeries): string {
  const width = 560;
  const height = 340;
  const margin = { left: 70, right: 130, top: 30, bottom: 50 };
  const points = Object.values(series).flat();
  const maxPods = Math.max(...points.map((p) => p.pods));
  const maxMiB = Math.max(...points.map((p) => p.perPodMiB)) * 1.1 || 1;
  const x = (pods: number): number => margin.left + ((pods - 0) / maxPods) * (width - margin.left - margin.right);
  const y = (mib: number): number => height - margin.bottom - (mib / maxMiB) * (height - margin.top - margin.bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2 - 60}" y="18" font-size="14">Host memory per idle pod</text>`,
    `<line x1="${margin.left}" y1="${y(0)}" x2="${width - margin.right}" y2="${y(0)}" stroke="black"/>`,
    `<line x1="${margin.left}" y1="${y(0)}" x2="${margin.left}" y2="${margin.top}" stroke="black"/>`,
    `<text x="${(margin.left + width - margin.right) / 2 - 20}" y="${height - 12}">pods</text>`,
    `<text x="14" y="${height / 2}" transform="rotate(-90 14 ${height / 2})">MiB per pod</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (maxMiB / 4) * i;
    parts.push(`<text x="${margin.left - 8}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`);
  }
  const podTicks = [...new Set(points.map((p) => p.pods))];
  for (const pods of podTicks) parts.push(`<text x="${x(pods)}" y="${y(0) + 18}" text-anchor="middle">${pods}</text>`);
  Object.entries(series).forEach(([name, data], i) => {
    const color = COLORS[i % COLORS.length];
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${data.map((p) => `${x(p.pods)},${y(p.perPodMiB)}`).join(' ')}"/>`);
    for (const p of data) parts.push(`<circle cx="${x(p.pods)}" cy="${y(p.perPodMiB)}" r="3" fill="${color}"/>`);
    parts.push(`<text x="${width - margin.right + 10}" y="${margin.top + 20 + i * 18}" fill="${color}">${name}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
