-- Values are stored uncompressed (they still move out of line when large), so their
-- stored size, pg_column_size(value), is their real size: readers cut pages at a number
-- of bytes by it (streams/pageReads.ts). Compressed, a 1 MiB repetitive value counted as
-- a few kB, and a page of them could reach gigabytes in the reader's memory.
ALTER TABLE stream_entries ALTER COLUMN value SET STORAGE EXTERNAL;
