// CloudFront Function (runtime cloudfront-js-2.0), viewer-request, on the image behaviors.
//
// Maps the viewer's Accept header to one format token, avif | webp | jpeg, and
//  - puts it in header X-Imgorigin-Format, which the cache policy keys on (the raw Accept
//    never enters the cache key: three variants per URL at most, not one per browser), and
//  - replaces Accept with a canonical value for that token, so the origin's fm=auto choice
//    (SPEC §2: AVIF if Accept lists image/avif, else WebP if image/webp, else JPEG/PNG) is a
//    function of the token, never of the raw header.
// When the format cannot depend on Accept (fm given and not "auto", or no query at all:
// the original is served untouched) the token is "any" and Accept is dropped, so all
// browsers share one cache entry.
//
// Unit tests: node --test deploy/cloudfront/ (the module.exports line below is for them;
// CloudFront ignores it).

var ACCEPT_FOR = {
    avif: 'image/avif,image/webp,image/*',
    webp: 'image/webp,image/*',
    jpeg: 'image/*',
};

// Whether a media range list names `type` with a non-zero quality.
function lists(accept, type) {
    var parts = accept.split(',');
    for (var i = 0; i < parts.length; i++) {
        var params = parts[i].split(';');
        if (params[0].trim().toLowerCase() !== type) {
            continue;
        }
        var q = 1;
        for (var j = 1; j < params.length; j++) {
            var kv = params[j].split('=');
            if (kv.length === 2 && kv[0].trim().toLowerCase() === 'q') {
                q = parseFloat(kv[1].trim());
            }
        }
        if (q > 0) {
            return true;
        }
    }
    return false;
}

function formatToken(accept) {
    var a = accept || '';
    if (lists(a, 'image/avif')) {
        return 'avif';
    }
    if (lists(a, 'image/webp')) {
        return 'webp';
    }
    return 'jpeg';
}

function handler(event) {
    var request = event.request;
    var headers = request.headers;
    var qs = request.querystring || {};
    var names = Object.keys(qs);
    var fm = qs.fm ? String(qs.fm.value || '').toLowerCase() : null;
    var negotiated = names.length > 0 && (fm === null || fm === 'auto');
    if (!negotiated) {
        headers['x-imgorigin-format'] = { value: 'any' };
        delete headers.accept;
        return request;
    }
    var token = formatToken(headers.accept ? headers.accept.value : '');
    headers['x-imgorigin-format'] = { value: token };
    headers.accept = { value: ACCEPT_FOR[token] };
    return request;
}

if (typeof module !== 'undefined') {
    module.exports = { handler: handler, formatToken: formatToken };
}
