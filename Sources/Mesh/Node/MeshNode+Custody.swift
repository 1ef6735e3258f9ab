import Gossip
import Store
import Sync

/// The custodian's side of push-to-2 (docs/PROTOCOL.md §9.5, docs/SYNC.md "Spot nodes"): a peer
/// that originated an item asks this node, with a signed `take`, to take a copy now.
///
/// The `take` carries the item's put entry, accepted as any relayed entry (its origin trusted,
/// its signature checked), so the copy is named here even if its origin vanishes before gossip
/// brought the entry. Unless this node is excluded, stopping, full or the item does not fit
/// under `max_disk_usage`, the content is fetched at once (at HIGH priority for an ephemeral
/// requester, else the type's) from the requester
/// (and every holder on record), whatever placement says: this node answers `accepted`, and
/// `complete` once it holds the item complete and verified. The copy is then kept like any other:
/// the drop rule lets a copy this node is not a target for go only once placement is met.
struct CustodyState {
    /// Who waits for a `complete` reply, by content: (requester, request id, when asked).
    var waiting: [ContentID: [(peer: NodeID, requestID: UInt32, at: Instant)]] = [:]
    var takesReceived: UInt64 = 0
    var takesAccepted: UInt64 = 0
    var takesRefused: UInt64 = 0
    var completeReplies: UInt64 = 0
}

extension MeshNode {
    /// Requesters waiting longer than this for a `complete` reply are forgotten (the origin asks
    /// again, or learns from the holder record).
    static let custodyWaitMaxNs: Int64 = 3_600_000_000_000
    /// The most contents with requesters waiting.
    static let custodyMaxWaiting = 10_000

    /// A push-to-2 message (type 0x20-0x21) from an established session.
    func receivedCustody(type: UInt8, body: ArraySlice<UInt8>, from peer: NodeID) {
        let msg: CustodyMessage
        do { msg = try CustodyMessage.decode([type] + body) } catch {
            count(.malformedCustodyMessage, peer: peer.short, detail: "\(error)")
            return
        }
        switch msg {
        case .take(let id, let target, let issuedMs, let entry, let signature):
            receivedTake(id, target: target, issuedMs: issuedMs, entry: entry, signature: signature, from: peer)
        case .takeReply(let id, let content, let status):
            receivedTakeReply(id, content, status, from: peer)
        }
    }

    func sendCustody(_ m: CustodyMessage, to peer: NodeID) {
        let bytes = m.encoded
        _ = send(bytes[0], Array(bytes[1...]), toNode: peer)
    }

    func receivedTake(_ id: UInt32, target: NodeID, issuedMs: Int64, entry: ManifestEntry, signature: Signature, from peer: NodeID) {
        custody.takesReceived += 1
        let content = entry.put?.contentID ?? ContentID(digest: .zero)
        func refuse(_ status: CustodyMessage.TakeStatus, _ why: String) {
            custody.takesRefused += 1
            logger.info("take refused", metadata: ["peer": "\(gossip.memberName(peer) ?? peer.short)", "item": "\(content.short)", "why": "\(why)"])
            sendCustody(.takeReply(requestID: id, contentID: content, status: status), to: peer)
        }
        guard let put = entry.put else { return refuse(.invalid, "the entry is not a put") }
        guard target == identity.nodeID,
              verifier.verify(signature, of: CustodyMessage.signedBytes(target: target, entry: entry, issuedMs: issuedMs), by: peer) else {
            count(.badTakeSignature, peer: peer.short)
            return refuse(.invalid, "the request's signature does not verify for this node")
        }
        guard !stopping else { return refuse(.stopping, "this node is shutting down") }
        guard !options.facts.excluded else { return refuse(.excluded, "exclude_from_sync names this node") }
        let (held, directives) = gossip.onCarriedEntry(entry, from: peer, now: Self.now())
        apply(directives)
        guard held || (try? store.entry(contentID: content)) != nil else { return refuse(.invalid, "the entry was not accepted") }
        if (try? store.isComplete(content)) == true {
            custody.takesAccepted += 1
            custody.completeReplies += 1
            return sendCustody(.takeReply(requestID: id, contentID: content, status: .complete), to: peer)
        }
        if placementState.full { return refuse(.full, "over max_disk_usage") }
        if let room = roomUnderCapBytes(), put.sizeBytes > room, blobs?.isFetching(content) != true {
            return refuse(.full, "\(put.sizeBytes) bytes do not fit under max_disk_usage")
        }
        guard let blobs else { return refuse(.stopping, "this node is shutting down") }
        if custody.waiting[content] == nil && custody.waiting.count >= Self.custodyMaxWaiting {
            return refuse(.full, "too many custody requests waiting")
        }
        custody.takesAccepted += 1
        custody.waiting[content, default: []].append((peer, id, Self.now()))
        // HIGH for a spot node's item (it is at risk until this copy exists); a durable origin's
        // offer goes at the type's placement priority, like the fetch placement would make.
        let requesterEphemeral = holdings.facts(of: peer)?.facts.ephemeral ?? true
        blobs.want(content, holders: Placement.fetchSources(hints: [peer, entry.origin], holders: holdings.holders(of: content), me: identity.nodeID),
                   reason: .replication, entry: entry, priority: requesterEphemeral ? .high : nil)
        sendCustody(.takeReply(requestID: id, contentID: content, status: .accepted), to: peer)
    }

    /// A content completed here: the requesters waiting for it hear `complete`.
    func custodyCompleted(_ content: ContentID) {
        guard let ws = custody.waiting.removeValue(forKey: content) else { return }
        for w in ws {
            custody.completeReplies += 1
            sendCustody(.takeReply(requestID: w.requestID, contentID: content, status: .complete), to: w.peer)
        }
    }

    /// Housekeeping: requesters waiting too long are forgotten.
    func custodyHousekeeping(now: Instant) {
        for (c, ws) in custody.waiting {
            let left = ws.filter { now - $0.at < Self.custodyWaitMaxNs }
            custody.waiting[c] = left.isEmpty ? nil : left
        }
    }
}
