// What the viewer shows: a series as a stack of images, one per frame of each instance
// (sorted by InstanceNumber), with the patient, study and default window around it.

import { get } from '../api.js';

const number = (v) => {
  const n = parseFloat(String(v ?? '').split('\\')[0]);
  return Number.isFinite(n) ? n : null;
};

/** The data set's own window, or one made from its pixel range when it has none. */
export function defaultWindow(tags, modality) {
  const center = number(tags.WindowCenter);
  const width = number(tags.WindowWidth);
  if (center !== null && width !== null && width > 0) return { center, width };
  if (modality === 'CT') return { center: 40, width: 400 };
  const bits = number(tags.BitsStored) || 8;
  const signed = number(tags.PixelRepresentation) === 1;
  const slope = number(tags.RescaleSlope) ?? 1;
  const intercept = number(tags.RescaleIntercept) ?? 0;
  const min = signed ? -(2 ** (bits - 1)) : 0;
  const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  return { center: ((min + max) / 2) * slope + intercept, width: (max - min) * slope };
}

/** Loads a series: { series, study, entries: [{instance, frame, frames, number}], tags }. */
export async function loadStack(seriesId, signal) {
  const series = await get(`/series/${seriesId}`, { signal });
  const [study, instances] = await Promise.all([
    get(`/studies/${series.ParentStudy}`, { signal }),
    get(`/series/${seriesId}/instances?expand`, { signal }),
  ]);
  instances.sort((a, b) =>
    (number(a.MainDicomTags.InstanceNumber) ?? 0) - (number(b.MainDicomTags.InstanceNumber) ?? 0)
    || (a.IndexInSeries || 0) - (b.IndexInSeries || 0));
  const entries = [];
  for (const inst of instances) {
    const frames = Math.max(1, parseInt(inst.MainDicomTags.NumberOfFrames, 10) || 1);
    for (let frame = 0; frame < frames; frame += 1) {
      entries.push({
        instance: inst.ID,
        frame,
        frames,
        first: entries.length - frame,
        number: inst.MainDicomTags.InstanceNumber || '',
      });
    }
  }
  return { series, study, instances, entries };
}

/** The simplified tags of one instance (for its window and cine rate); {} when unreadable. */
export async function instanceTags(instanceId, signal) {
  try {
    return await get(`/instances/${instanceId}/tags?simplify`, { signal });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    return {};
  }
}

/** Frames per second for cine: CineRate, else 1000 / FrameTime, else 15. */
export function cineRate(tags) {
  const rate = number(tags.CineRate) || number(tags.RecommendedDisplayFrameRate);
  if (rate && rate > 0 && rate <= 120) return rate;
  const frameTime = number(tags.FrameTime);
  if (frameTime && frameTime > 0) return Math.min(60, 1000 / frameTime);
  return 15;
}
