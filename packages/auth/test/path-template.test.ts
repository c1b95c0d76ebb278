import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as core from '@meshlet/core';
import * as auth from '../src/index.js';

describe('path templates in @meshlet/auth', () => {
  it('are the ones of @meshlet/core, so a PathTemplateError from either is the same class', () => {
    assert.equal(auth.PathTemplate, core.PathTemplate);
    assert.equal(auth.ApiMatcher, core.ApiMatcher);
    assert.equal(auth.PathTemplateError, core.PathTemplateError);
    assert.equal(auth.pathTemplateProblem, core.pathTemplateProblem);
    assert.equal(auth.normalizeTemplate, core.normalizeTemplate);
    assert.equal(auth.apiKey, core.apiKey);
    assert.equal(new auth.ApiMatcher([{ method: 'GET', path: '/users/{id}' }]).match('GET', '/users/7')?.key, 'GET /users/{id}');
  });
});
