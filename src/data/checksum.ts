import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';

/** The header a data GET of a whole file carries its CRC-32 in. */
export const crcHeader = 'x-ks-crc32';

/**
 * What a copy of data is checked against: the registry's CRC-32 (8 hex digits), or, for an
 * entry written before kitchensink used CRCs, its md5 (checked once, then replaced by the CRC).
 */
export type Checksum = { crc32: string } | { md5: string };

/**
 * The CRC-32 of bytes as they stream past (zlib's, the check HDFS, GCS and S3 use for
 * transfers: 4-5 GB/s on one core here, against md5's 0.6), and their md5 as well when a
 * pre-CRC entry must be checked.
 */
export class StreamChecksum {
  private crc = 0;
  private readonly md5?: Hash;
  size = 0;

  constructor(expected?: Checksum) {
    if (expected && 'md5' in expected) this.md5 = createHash('md5');
  }

  update(chunk: Uint8Array): void {
    this.crc = crc32(chunk, this.crc);
    this.md5?.update(chunk);
    this.size += chunk.byteLength;
  }

  get crc32(): string {
    return crcHex(this.crc);
  }

  /** How the bytes differ from `expected`, in words ("crc32 0a1b2c3d, expected ..."); undefined when they match. */
  mismatch(expected: Checksum): string | undefined {
    if ('crc32' in expected) return expected.crc32 === this.crc32 ? undefined : `crc32 ${this.crc32}, expected ${expected.crc32}`;
    const md5 = this.md5!.digest('hex');
    return md5 === expected.md5 ? undefined : `md5 ${md5}, expected ${expected.md5}`;
  }
}

/** A CRC-32 as the registry writes it: 8 lower-case hex digits. */
export function crcHex(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, '0');
}

/** The checksum a registry entry holds: its CRC-32, else (written before CRCs) its md5. */
export function checksumOf(entry: { crc32?: string; md5?: string }): Checksum {
  return entry.crc32 ? { crc32: entry.crc32 } : { md5: entry.md5! };
}

/** `crc32 0a1b2c3d` or `md5 ...`, for messages. */
export function describeChecksum(checksum: Checksum): string {
  return 'crc32' in checksum ? `crc32 ${checksum.crc32}` : `md5 ${checksum.md5}`;
}
