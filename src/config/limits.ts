/** 1 MiB: the largest legitimate request (64 scopes, a 2 KiB return_to) is a few kilobytes. */
export const DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024;
