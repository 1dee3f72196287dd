// Which file a path names now: a rebuilt or replaced file (kernel, image, VMM binary)
// has another identity, though its path is the same.
import * as fs from 'fs';

export function fileIdentity(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${file}:${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
}
