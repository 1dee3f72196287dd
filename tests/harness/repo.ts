// Where the repository is, whether this runs from the sources (ts-jest) or from dist/.
import * as fs from 'fs';
import * as path from 'path';

function findRepoRoot(start: string): string {
  for (let dir = start; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'guest', 'build.sh'))) return dir;
  }
  throw new Error(`no kata-ts repository above ${start}`);
}

export const REPO = findRepoRoot(__dirname);
/** The newest built guest image directory (guest/build.sh). */
export const GUEST_CURRENT = path.join(REPO, 'guest', 'out', 'current');
