// The metadata API (/api/v1) with the signed-in person's token. Errors carry the API's
// problem+json `detail`, which the page shows as it is.

import { token, rejected } from './auth.js';

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function problem(resp) {
  const body = await resp.json().catch(() => null);
  const detail = (body && body.detail) || `${resp.status} ${resp.statusText}`.trim();
  if (resp.status === 401 && token()) rejected();
  return new ApiError(resp.status, detail);
}

/** `method path` with an optional JSON body; resolves to the JSON answer (null for 204). */
export async function api(method, path, body) {
  const init = {
    method,
    headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    credentials: 'omit',
    cache: 'no-store',
  };
  if (body !== undefined) init.body = JSON.stringify(body);
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, init);
  } catch {
    throw new ApiError(0, 'The server cannot be reached.');
  }
  if (!resp.ok) throw await problem(resp);
  return resp.status === 204 ? null : resp.json();
}

/**
 * Uploads `file` as multipart `file` (so its name travels) with XMLHttpRequest, whose
 * upload events give progress. `onProgress(fraction)`; resolves to the new record.
 */
export function upload(file, level, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const q = new URLSearchParams({ level });
    xhr.open('POST', `/api/v1/images?${q}`);
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.responseType = 'json';
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      const body = xhr.response;
      if (xhr.status === 201) {
        resolve(body);
      } else {
        if (xhr.status === 401 && token()) rejected();
        reject(new ApiError(xhr.status, (body && body.detail) || `HTTP ${xhr.status}`));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'The upload was cut off (network error).')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'The upload was cancelled.')));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}
