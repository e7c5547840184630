// kafkajs compression plugins for snappy, lz4 and zstd, all pure JS or WebAssembly
// shipped inside the npm tarball (nothing builds or downloads a native binary):
//
//   snappy  kafkajs-snappy (snappyjs); decompresses raw and xerial-framed snappy
//   lz4     lz4js block codec in an LZ4 frame (Kafka magic >= 1, KIP-57); frames are
//           read here, not by lz4js.decompress, which misplaces block checksums
//   zstd    @bokuweb/zstd-wasm: one zstd frame per batch
//
// register() installs them in kafkajs's CompressionCodecs table; a codec is
// `() => ({ async compress(encoder) -> Buffer, async decompress(buffer) -> Buffer })`
// (kafkajs src/protocol/message/compression).
'use strict'

const snappyCodec = require('kafkajs-snappy')
const lz4js = require('lz4js')
const xxh32 = require('lz4js/xxh32').hash
const zstd = require('@bokuweb/zstd-wasm')

const ZSTD_LEVEL = 3
// ZSTD_decompress needs an output buffer; frames written by streaming compressors
// carry no content size, so the buffer starts at this size and doubles up to the cap
const ZSTD_FIRST_HEAP = 1 << 20
const ZSTD_MAX_HEAP = 1 << 30
const ZSTD_DST_TOO_SMALL = /code -70$/ // ZSTD_error_dstSize_tooSmall

const LZ4_MAGIC = 0x184d2204
const LZ4_BLOCK_SIZES = { 4: 1 << 16, 5: 1 << 18, 6: 1 << 20, 7: 1 << 22 }
const LZ4_UNCOMPRESSED = 0x80000000

// Parse one LZ4 frame at `pos` (LZ4 frame format 1.6): its flags, its blocks as
// [start, length, compressed] and where it ends. Throws on a malformed frame.
function lz4Frame(buf, pos) {
  if (buf.readUInt32LE(pos) !== LZ4_MAGIC) throw new Error('lz4: bad frame magic')
  const flg = buf[pos + 4]
  const maxBlock = LZ4_BLOCK_SIZES[(buf[pos + 5] >> 4) & 7]
  if (flg >> 6 !== 1 || maxBlock === undefined) throw new Error('lz4: bad frame descriptor')
  const blockSum = (flg & 0x10) !== 0
  const contentSum = (flg & 0x04) !== 0
  let at = pos + 6
  let contentSize = null
  if (flg & 0x08) {
    contentSize = Number(buf.readBigUInt64LE(at))
    at += 8
  }
  if (flg & 0x01) at += 4 // dictionary id (Kafka never sets one)
  at += 1 // header checksum
  const blocks = []
  let bound = 0
  for (;;) {
    const word = buf.readUInt32LE(at)
    at += 4
    if (word === 0) break
    const length = (word & ~LZ4_UNCOMPRESSED) >>> 0
    const compressed = (word & LZ4_UNCOMPRESSED) === 0
    if (at + length > buf.length) throw new Error('lz4: truncated block')
    blocks.push([at, length, compressed])
    bound += compressed ? maxBlock : length
    at += length + (blockSum ? 4 : 0)
  }
  const checksum = contentSum ? buf.readUInt32LE(at) : null
  if (contentSum) at += 4
  return { blocks, size: contentSize ?? bound, checksum, end: at }
}

function lz4Decompress(buf) {
  const parts = []
  for (let pos = 0; pos < buf.length; ) {
    const frame = lz4Frame(buf, pos)
    const out = Buffer.alloc(frame.size)
    let n = 0
    for (const [start, length, compressed] of frame.blocks) {
      if (compressed) n = lz4js.decompressBlock(buf, out, start, length, n)
      else n += buf.copy(out, n, start, start + length)
    }
    if (n > out.length) throw new Error('lz4: frame larger than declared')
    if (frame.checksum !== null && xxh32(0, out, 0, n) !== frame.checksum) {
      throw new Error('lz4: content checksum mismatch')
    }
    parts.push(out.subarray(0, n))
    pos = frame.end
  }
  return parts.length === 1 ? parts[0] : Buffer.concat(parts)
}

const lz4Codec = () => ({
  async compress(encoder) {
    return Buffer.from(lz4js.compress(encoder.buffer))
  },
  async decompress(buffer) {
    return lz4Decompress(buffer)
  },
})

let zstdReady = null

const zstdCodec = () => ({
  async compress(encoder) {
    await (zstdReady ||= zstd.init())
    return Buffer.from(zstd.compress(encoder.buffer, ZSTD_LEVEL))
  },
  async decompress(buffer) {
    await (zstdReady ||= zstd.init())
    let heap = Math.max(ZSTD_FIRST_HEAP, 8 * buffer.length)
    for (;;) {
      try {
        return Buffer.from(zstd.decompress(buffer, { defaultHeapSize: heap }))
      } catch (err) {
        if (!ZSTD_DST_TOO_SMALL.test(err.message) || heap >= ZSTD_MAX_HEAP) throw err
        heap *= 2
      }
    }
  },
})

function register(kafkajs) {
  const { CompressionTypes, CompressionCodecs } = kafkajs
  CompressionCodecs[CompressionTypes.Snappy] = snappyCodec
  CompressionCodecs[CompressionTypes.LZ4] = lz4Codec
  CompressionCodecs[CompressionTypes.ZSTD] = zstdCodec
}

module.exports = { register }
