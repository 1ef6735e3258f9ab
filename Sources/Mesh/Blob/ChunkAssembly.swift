import Gossip

/// A chunk too large for one `chunk` message, put together from its `chunk_piece`s as they
/// arrive on one session (docs/PROTOCOL.md §9.2). Pure; the fetch path keeps at most one per
/// session, so the bytes held are bounded by the largest chunk size (64 MiB).
struct ChunkAssembly: Sendable {
    let requestID: UInt32
    let source: NodeID
    let index: Int
    let chunkBytes: Int
    private(set) var bytes: [UInt8]

    /// Starts with the piece at offset 0.
    init(requestID: UInt32, source: NodeID, index: Int, chunkBytes: Int, first: ArraySlice<UInt8>) {
        self.requestID = requestID
        self.source = source
        self.index = index
        self.chunkBytes = chunkBytes
        bytes = []
        bytes.reserveCapacity(chunkBytes)  // one allocation for the whole chunk
        bytes.append(contentsOf: first)
    }

    /// Where the next piece must start.
    var nextOffset: Int { bytes.count }
    var isComplete: Bool { bytes.count == chunkBytes }

    /// Whether a piece with this header is the next one of this chunk.
    func continues(requestID: UInt32, index: Int, chunkBytes: Int, offset: Int) -> Bool {
        requestID == self.requestID && index == self.index && chunkBytes == self.chunkBytes && offset == nextOffset
    }

    /// Appends the next piece (checked with `continues` and `BlobMessage.pieceProblem` first).
    mutating func append(_ piece: ArraySlice<UInt8>) {
        precondition(bytes.count + piece.count <= chunkBytes, "chunk piece past the chunk's end")
        bytes.append(contentsOf: piece)
    }
}
