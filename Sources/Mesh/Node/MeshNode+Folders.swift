import Store

extension MeshNode {
    /// Starts the watched folders of `options.folders` (none: nothing). Called by `init`.
    func startFolders() throws(MeshError) {
        guard !options.folders.isEmpty else { return }
        let service = try FolderService(node: self, configs: options.folders)
        folders = service
        service.start()
    }

    /// Closes the folders' watchers and timers; actions already running finish on their
    /// threads, their results are dropped (each is crash-safe on its own).
    func stopFolders() {
        folders?.close()
        folders = nil
    }
}
