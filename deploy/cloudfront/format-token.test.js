// node --test deploy/cloudfront/
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { handler, formatToken } = require('./format-token.js');

function event(accept, query) {
    const headers = { host: { value: 'images.example.com' } };
    if (accept !== undefined) {
        headers.accept = { value: accept };
    }
    const querystring = {};
    for (const [k, v] of Object.entries(query || {})) {
        querystring[k] = { value: v };
    }
    return { version: '1.0', request: { method: 'GET', uri: '/public/cat.jpg', headers, querystring, cookies: {} } };
}

const CHROME = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
const FIREFOX_OLD = 'image/webp,*/*';
const SAFARI_16 = 'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
const SAFARI_OLD = 'image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5';

test('tokens follow the SPEC order: avif, then webp, then jpeg', () => {
    assert.strictEqual(formatToken(CHROME), 'avif');
    assert.strictEqual(formatToken(SAFARI_16), 'avif');
    assert.strictEqual(formatToken(FIREFOX_OLD), 'webp');
    assert.strictEqual(formatToken(SAFARI_OLD), 'jpeg');
    assert.strictEqual(formatToken('*/*'), 'jpeg');
    assert.strictEqual(formatToken(''), 'jpeg');
    assert.strictEqual(formatToken(undefined), 'jpeg');
});

test('media types are matched exactly, case-insensitively, with q=0 meaning no', () => {
    assert.strictEqual(formatToken('IMAGE/AVIF'), 'avif');
    assert.strictEqual(formatToken(' image/webp ; q=0.5'), 'webp');
    assert.strictEqual(formatToken('image/avif;q=0, image/webp'), 'webp');
    assert.strictEqual(formatToken('image/avif;q=0.0,image/webp;q=0'), 'jpeg');
    assert.strictEqual(formatToken('image/avifx,image/webp2'), 'jpeg');
    assert.strictEqual(formatToken('text/html;image/avif'), 'jpeg');
});

test('negotiated requests get the token and a canonical Accept', () => {
    for (const [accept, token] of [[CHROME, 'avif'], [FIREFOX_OLD, 'webp'], [SAFARI_OLD, 'jpeg']]) {
        for (const query of [{ w: '400' }, { w: '400', fm: 'auto' }, { fm: 'AUTO' }]) {
            const r = handler(event(accept, query));
            assert.strictEqual(r.headers['x-imgorigin-format'].value, token);
            assert.strictEqual(formatToken(r.headers.accept.value), token, 'canonical Accept maps back');
            assert.notStrictEqual(r.headers.accept.value, accept);
            assert.deepStrictEqual(r.querystring, event(accept, query).request.querystring, 'query untouched');
            assert.strictEqual(r.uri, '/public/cat.jpg');
        }
    }
});

test('a missing Accept is jpeg', () => {
    const r = handler(event(undefined, { w: '10' }));
    assert.strictEqual(r.headers['x-imgorigin-format'].value, 'jpeg');
    assert.strictEqual(r.headers.accept.value, 'image/*');
});

test('fixed formats and originals do not depend on Accept', () => {
    for (const query of [{ w: '400', fm: 'webp' }, { fm: 'jpeg' }, {}]) {
        const a = handler(event(CHROME, query));
        const b = handler(event(SAFARI_OLD, query));
        assert.strictEqual(a.headers['x-imgorigin-format'].value, 'any');
        assert.strictEqual(b.headers['x-imgorigin-format'].value, 'any');
        assert.strictEqual(a.headers.accept, undefined);
        assert.strictEqual(b.headers.accept, undefined);
    }
});

test('only three tokens (plus "any") can ever reach the cache key', () => {
    const seen = new Set();
    const samples = [CHROME, FIREFOX_OLD, SAFARI_16, SAFARI_OLD, '', '*/*', 'garbage', 'image/avif', 'image/webp;q=0.1'];
    for (const a of samples) {
        seen.add(handler(event(a, { w: '1' })).headers['x-imgorigin-format'].value);
    }
    assert.deepStrictEqual([...seen].sort(), ['avif', 'jpeg', 'webp']);
});

test('the function stays within the cloudfront-js-2.0 subset we rely on', () => {
    const src = fs.readFileSync(path.join(__dirname, 'format-token.js'), 'utf8');
    assert.ok(src.includes('function handler(event)'));
    assert.ok(src.length < 10240, 'CloudFront Functions are limited to 10 KB');
    for (const banned of ['require(', 'import ', 'fetch(', 'setTimeout', 'async ', 'await ']) {
        assert.ok(!src.includes(banned), `uses ${banned}`);
    }
});

// The stack embeds the function inline; it must be this file's code (comments and the
// module.exports line for these tests aside).
test('the CloudFormation template carries this exact function', () => {
    const code = (text) => text
        .split('\n')
        .map((l) => l.trimEnd())
        .filter((l) => l.trim() !== '' && !l.trim().startsWith('//'))
        .join('\n');
    const src = fs.readFileSync(path.join(__dirname, 'format-token.js'), 'utf8');
    const own = code(src.slice(0, src.indexOf("if (typeof module !== 'undefined')")));
    const yaml = fs.readFileSync(path.join(__dirname, '..', 'cloudformation', 'imgorigin.yaml'), 'utf8');
    const lines = yaml.split('\n');
    const start = lines.findIndex((l) => l.trim() === 'FunctionCode: |');
    assert.ok(start > 0, 'FunctionCode block not found');
    const indent = lines[start + 1].match(/^ */)[0];
    const block = [];
    for (const l of lines.slice(start + 1)) {
        if (l.trim() !== '' && !l.startsWith(indent)) {
            break;
        }
        block.push(l.slice(indent.length));
    }
    assert.strictEqual(code(block.join('\n')), own);
});
